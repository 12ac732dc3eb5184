"""Pictures of a run: plotnine charts from tidy DataFrames, image grids from arrays.

Chart functions return a `plotnine.ggplot`; grid functions return a float
image array [height, width, channels] in [0, 1]. `save_grid` and `draw_run`
write PNGs. Nothing here trains: a model comes restored from a run directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen is needed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotnine as gg
import tensorflow as tf
from scipy import stats

from tfvae import data as data_lib
from tfvae import train as train_lib
from tfvae.model import VAE

# Test images shown by the classic Bernoulli walkthrough (003).
DEFAULT_RECONSTRUCTION_INDICES = (1, 4, 12, 15, 22)
_TERM_LABELS = {"loss": "total (-ELBO)", "reconstruction": "reconstruction", "kl": "KL"}


def tidy_history(history: pd.DataFrame) -> pd.DataFrame:
    """history.csv rows -> long rows (step, split, term, value), NaNs dropped."""
    columns = [f"{split}_{term}" for split in ("train", "test") for term in _TERM_LABELS]
    long = history.melt(id_vars=["step"], value_vars=columns, var_name="column", value_name="value").dropna()
    long[["split", "term"]] = long["column"].str.split("_", n=1, expand=True)
    long["term"] = pd.Categorical(long["term"].map(_TERM_LABELS), categories=list(_TERM_LABELS.values()))
    return long.drop(columns="column").reset_index(drop=True)


def loss_curves(history: pd.DataFrame, beta: float = 1.0, log_scale: bool = False) -> gg.ggplot:
    """Each term of the objective against step, train and test, one panel per term."""
    long = tidy_history(history)
    objective = "reconstruction + KL" if beta == 1 else f"reconstruction + {beta:g} KL"
    plot = (
        gg.ggplot(long, gg.aes(x="step", y="value", color="split"))
        + gg.geom_line(data=long[long["split"] == "train"])
        + gg.geom_point(data=long[long["split"] == "test"], size=1.5)
        + gg.geom_line(data=long[long["split"] == "test"])
        + gg.facet_wrap("~term", scales="free_y", nrow=1)
        + gg.labs(x="training step", y="nats per image", color="split", title=f"Loss = {objective} (beta = {beta:g})")
        + gg.theme_bw()
        + gg.theme(figure_size=(11, 3.6))
    )
    if log_scale:
        plot += gg.scale_x_log10() + gg.scale_y_log10()
    return plot


def tile(images: np.ndarray, padding: int = 1) -> np.ndarray:
    """[rows, cols, H, W, C] -> one image [rows*(H+p)-p, cols*(W+p)-p, C], white gaps."""
    rows, cols, height, width, channels = images.shape
    canvas = np.ones((rows * (height + padding) - padding, cols * (width + padding) - padding, channels), np.float32)
    for row in range(rows):
        for col in range(cols):
            top, left = row * (height + padding), col * (width + padding)
            canvas[top : top + height, left : left + width] = images[row, col]
    return canvas


def reconstruction_grid(model: VAE, images: np.ndarray) -> np.ndarray:
    """Originals [n, H, W, C] in the top row, their reconstructions (decoded posterior means) below."""
    reconstructions = model.reconstruct(tf.convert_to_tensor(images, tf.float32)).numpy()
    return tile(np.stack([images, reconstructions]))


def quantile_coordinates(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """Standard Normal quantiles norm.ppf(linspace(low, high, n)): [n]."""
    return stats.norm.ppf(np.linspace(low, high, n)).astype(np.float32)


def latent_grid_codes(latent_size: int, xs: np.ndarray, ys: np.ndarray, dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Latent codes [len(ys), len(xs), latent_size]: dims[0] = x (columns), dims[1] = y (rows,
    top row = largest y), every other dimension 0."""
    codes = np.zeros((len(ys), len(xs), latent_size), np.float32)
    codes[:, :, dims[1]] = ys[::-1, None]
    codes[:, :, dims[0]] = xs[None, :]  # after y: with one latent dimension, x wins
    return codes


def latent_grid(model: VAE, xs: np.ndarray, ys: np.ndarray, dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Decoded means over a grid of latent coordinates: one tiled image, rows = y (top largest)."""
    codes = latent_grid_codes(model.latent_size, xs, ys, dims)
    flat = codes.reshape(-1, model.latent_size)
    decoded = model.decode(tf.constant(flat)).mean().numpy()
    return tile(decoded.reshape(len(ys), len(xs), *decoded.shape[1:]), padding=0)


def save_grid(
    grid: np.ndarray,
    path: str | os.PathLike,
    title: str,
    *,
    xlabel: str = "",
    ylabel: str = "",
    xticks: Sequence[float] | None = None,
    yticks: Sequence[float] | None = None,
    width_inches: float = 8.0,
) -> None:
    """Writes an image grid as a PNG with a title and, when given, latent-coordinate axes.

    xticks / yticks: the coordinate of each column / row (top row first).
    """
    height, width = grid.shape[:2]
    has_axes = xticks is not None or yticks is not None
    figure, axes = plt.subplots(figsize=(width_inches, width_inches * height / width + (1.0 if has_axes else 0.5)), dpi=100)
    axes.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_title(title)
    for ticks, size, set_ticks, set_labels in (
        (xticks, width, axes.set_xticks, axes.set_xticklabels),
        (yticks, height, axes.set_yticks, axes.set_yticklabels),
    ):
        if ticks is None:
            set_ticks([])
            continue
        step = max(1, len(ticks) // 8)
        centres = (np.arange(len(ticks)) + 0.5) * size / len(ticks) - 0.5
        set_ticks(centres[::step])
        set_labels([f"{tick:.2f}" for tick in ticks[::step]])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def draw_run(run_dir: str | os.PathLike, grid_size: int = 20) -> list[Path]:
    """Draws the loss curves, reconstructions and latent grid of a run into RUN_DIR/figures/.

    The latent grid spans standard Normal quantiles 0.05..0.95 over latent
    dimensions 0 and 1 (the others at 0). Returns the paths written.
    """
    run_dir = Path(run_dir)
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    experiment = train_lib.load_experiment(run_dir)
    beta = experiment.train.beta
    written = [figures / "loss_curves.png", figures / "reconstructions.png", figures / "latent_grid.png"]

    history = train_lib.read_history(run_dir)
    loss_curves(history, beta, log_scale=False).save(written[0], dpi=100, verbose=False)

    model = train_lib.restore_model(run_dir)
    test = data_lib.load(experiment.data.name, "test", batch_size=max(DEFAULT_RECONSTRUCTION_INDICES) + 1,
                         binarize=experiment.data.binarize, data_dir=experiment.data.data_dir)
    first_batch = next(iter(test)).numpy()
    indices = [index for index in DEFAULT_RECONSTRUCTION_INDICES if index < len(first_batch)]
    chosen = first_batch[indices or [0]]
    save_grid(reconstruction_grid(model, chosen), written[1], "Test images (top) and their reconstructions (bottom)",
              width_inches=6.5)

    coordinates = quantile_coordinates(grid_size)
    dims = (0, 1) if model.latent_size > 1 else (0, 0)
    rows = coordinates if model.latent_size > 1 else np.zeros(1, np.float32)
    rest = "" if model.latent_size <= 2 else f", other {model.latent_size - 2} dimensions at 0"
    save_grid(
        latent_grid(model, coordinates, rows, dims),
        written[2],
        f"Decoded means over a {grid_size}x{grid_size} grid of Normal quantiles{rest}",
        width_inches=10.0,
        xlabel=f"z[{dims[0]}]",
        ylabel=f"z[{dims[1]}]",
        xticks=coordinates,
        yticks=rows[::-1],
    )
    return written
