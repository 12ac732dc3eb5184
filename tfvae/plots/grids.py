"""Image grids: pure functions from a model and latent coordinates to one tiled image array.

Every grid function returns float32 [height, width, channels] in [0, 1],
tiles separated by white gaps (or none, for the latent manifolds). The
codes behind a grid come from a `*_codes` function, so a test (or a reader)
can decode the same coordinates directly. `save_grid` / `render_grid` add a
title and latent-coordinate axes with matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from tfvae import factor_evaluation, protocol
from tfvae.model import VAE, as_images, central_code

_DPI = 100


# --------------------------------------------------------------------------- tiling and decoding
def tile(images: np.ndarray, padding: int = 1) -> np.ndarray:
    """[rows, cols, H, W, C] -> one image [rows*(H+p)-p, cols*(W+p)-p, C], white gaps."""
    rows, cols, height, width, channels = images.shape
    canvas = np.ones((rows * (height + padding) - padding, cols * (width + padding) - padding, channels), np.float32)
    for row in range(rows):
        for col in range(cols):
            top, left = row * (height + padding), col * (width + padding)
            canvas[top : top + height, left : left + width] = images[row, col]
    return canvas


def decode_means(model: VAE, codes: np.ndarray) -> np.ndarray:
    """Means of p(x|z) for latent codes [..., latent]: [..., H, W, C] in [0, 1]."""
    codes = np.asarray(codes, np.float32)
    means = model.decode(tf.constant(codes.reshape(-1, codes.shape[-1]))).mean().numpy()
    return means.reshape(*codes.shape[:-1], *means.shape[1:])


def encode_means(model: VAE, images: np.ndarray) -> np.ndarray:
    """Posterior means E_q[z|x] for images [n, H, W, C] (uint8 or floats in [0, 1]): [n, latent]."""
    return central_code(model.encode(as_images(images))).numpy()


# --------------------------------------------------------------------------- reconstructions and samples
def reconstruction_grid(model: VAE, images: np.ndarray) -> np.ndarray:
    """Originals [n, H, W, C] (uint8 or floats in [0, 1]) in the top row, their reconstructions
    (decoded posterior means) below."""
    images = as_images(images)
    return tile(np.stack([images.numpy(), protocol.reconstruct(model, images).numpy()]))


def prior_sample_codes(model: VAE, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Draws z ~ p(z) with a stateless seed: [rows, cols, latent]."""
    z = model.prior.sample(rows * cols, seed=tf.constant([seed, 0], tf.int32)).numpy()
    return z.reshape(rows, cols, -1)


def prior_sample_grid(model: VAE, rows: int = 8, cols: int = 8, seed: int = 0) -> np.ndarray:
    """Means of p(x|z) for rows*cols draws z ~ p(z), tiled row by row."""
    return tile(decode_means(model, prior_sample_codes(model, rows, cols, seed)))


def class_sample_grid(model, classes: Sequence[int], cols: int = 10, seed: int = 0) -> np.ndarray:
    """A class-taking model's means of p(x|z, y): a row per class y, a column per draw z ~ p(z).

    Each column's z is the same in every row, so a column shows one style
    (slant, stroke width) and a row one class. `model` takes the side data
    "label" (`tfvae.protocol`), e.g. a `tfvae.model.ConditionalVAE`.
    """
    codes = prior_sample_codes(model, 1, cols, seed)[0]  # [cols, latent]
    return tile(np.stack([decode_means(protocol.with_side_data(model, {"label": label}), codes)
                          for label in classes]))


# --------------------------------------------------------------------------- the latent manifold
def quantile_coordinates(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """Standard Normal quantiles norm.ppf(linspace(low, high, n)): [n]."""
    return stats.norm.ppf(np.linspace(low, high, n)).astype(np.float32)


def linear_coordinates(n: int, limit: float = 3.0) -> np.ndarray:
    """Evenly spaced coordinates linspace(-limit, limit, n): [n]."""
    return np.linspace(-limit, limit, n).astype(np.float32)


def latent_grid_codes(latent_size: int, xs: np.ndarray, ys: np.ndarray, dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Latent codes [len(ys), len(xs), latent_size]: dims[0] = x (columns), dims[1] = y (rows,
    top row = largest y), every other dimension 0."""
    codes = np.zeros((len(ys), len(xs), latent_size), np.float32)
    codes[:, :, dims[1]] = np.asarray(ys)[::-1, None]
    codes[:, :, dims[0]] = np.asarray(xs)[None, :]  # after y: with one latent dimension, x wins
    return codes


def latent_grid(model: VAE, xs: np.ndarray, ys: np.ndarray, dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Decoded means over a grid of latent coordinates: one tiled image, rows = y (top largest)."""
    return tile(decode_means(model, latent_grid_codes(model.latent_size, xs, ys, dims)), padding=0)


def manifold_axes(latent_size: int, coordinates: np.ndarray, dims: tuple[int, int] = (0, 1)):
    """(xs, ys, dims) for a manifold picture; a 1-d latent gets one row at y = 0 over dimension 0."""
    if latent_size == 1:
        return coordinates, np.zeros(1, np.float32), (0, 0)
    return coordinates, coordinates, dims


# --------------------------------------------------------------------------- traversals, interpolation, offsets
def traversal_codes(base: np.ndarray, dims: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Row i sweeps dimension dims[i] over `values`, the others stay at `base` [latent]:
    [len(dims), len(values), latent]."""
    base = np.asarray(base, np.float32)
    codes = np.repeat(np.repeat(base[None, None], len(dims), 0), len(values), 1)
    for row, dim in enumerate(dims):
        codes[row, :, dim] = values
    return codes


def traversal_grid(model: VAE, base: np.ndarray, dims: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Decoded means of `traversal_codes`: a row per dimension, a column per value."""
    return tile(decode_means(model, traversal_codes(base, dims, values)))


def factor_rows(table: pd.DataFrame) -> tuple[list[int], list[str]]:
    """The rows of a traversal named by factor, from `tfvae.factor_evaluation.latent_factors`'s table: the
    dimensions by mean KL, highest first (by the posterior means' variance where the KL is unknown), and
    their labels "z[d] FACTOR SHARE" (`factor_evaluation.traversal_labels`)."""
    key = "kl" if table["kl"].notna().all() else "variance"
    ordered = table.sort_values(key, ascending=False, kind="stable")
    return [int(d) for d in ordered["dim"]], factor_evaluation.traversal_labels(ordered)


def save_factor_traversal(model: VAE, base: np.ndarray, table: pd.DataFrame, path: str | os.PathLike, title: str,
                          values: np.ndarray | None = None) -> Path:
    """A traversal (`traversal_grid` around the code `base` [latent]) whose rows are named by the factor each
    dimension is most informative about (`factor_rows`), written as a PNG; `values` default to 11 in [-3, 3]."""
    values = linear_coordinates(11, 3.0) if values is None else np.asarray(values, np.float32)
    dims, labels = factor_rows(table)
    save_grid(traversal_grid(model, base, dims, values), path, title, xlabel="value of the swept dimension",
              ylabel="dimension, factor it is most informative about, I / H(factor)", xticks=values, yticks=labels)
    return Path(path)


def interpolation_codes(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """(1 - t) start + t end for t = linspace(0, 1, steps): [steps, latent]."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return (1 - t) * np.asarray(start, np.float32) + t * np.asarray(end, np.float32)


def interpolation_grid(
    models: VAE | Sequence[VAE], image_a: np.ndarray, image_b: np.ndarray, steps: int = 10
) -> np.ndarray:
    """A row per model: image a, decoded means along the line between the posterior means of
    a and b (`steps` points), image b. Images are [H, W, C] (uint8 or floats in [0, 1])."""
    models = [models] if protocol.is_model(models) else list(models)
    image_a, image_b = as_images([image_a, image_b]).numpy()
    rows = []
    for model in models:
        start, end = encode_means(model, np.stack([image_a, image_b]))
        rows.append([image_a, *decode_means(model, interpolation_codes(start, end, steps)), image_b])
    return tile(np.asarray(rows, np.float32))


def offset_codes(bases: np.ndarray, direction: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """bases [n, latent] + t * direction [latent] for each t: [n, len(ts), latent]."""
    bases, direction = np.asarray(bases, np.float32), np.asarray(direction, np.float32)
    return bases[:, None, :] + np.asarray(ts, np.float32)[None, :, None] * direction


def offset_grid(model: VAE, bases: np.ndarray, direction: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Decoded means of `offset_codes`: a row per base code, a column per t."""
    return tile(decode_means(model, offset_codes(bases, direction, ts)))


def sample_panels(images_by_name: dict[str, np.ndarray], cols: int = 8, gap: int = 6) -> np.ndarray:
    """Each entry's images [n, H, W, C] tiled in rows of `cols` (a short last row padded white), the panels side
    by side, `gap` white pixels apart, in the dict's order: one grid (label its columns with the names)."""
    panels = []
    for images in images_by_name.values():
        images = np.asarray(images, np.float32)
        rows = -(-len(images) // cols)
        padded = np.ones((rows * cols, *images.shape[1:]), np.float32)
        padded[: len(images)] = images
        panels.append(tile(padded.reshape(rows, cols, *images.shape[1:])))
    height = max(panel.shape[0] for panel in panels)
    panels = [np.pad(panel, ((0, height - panel.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for panel in panels]
    return tile(np.stack(panels)[None], padding=gap)


# --------------------------------------------------------------------------- drawing a grid
def _tick_label(tick) -> str:
    return tick if isinstance(tick, str) else f"{tick:.2f}"


def grid_figure(
    grid: np.ndarray,
    title: str,
    *,
    xlabel: str = "",
    ylabel: str = "",
    xticks: Sequence[float | str] | None = None,
    yticks: Sequence[float | str] | None = None,
    width_inches: float = 8.0,
) -> Figure:
    """A matplotlib figure of `grid` with a title and, when given, axes labelled per column / row.

    xticks / yticks: the coordinate (or a label) of each column / row, top row first.
    The image is scaled by a whole number of screen pixels per image pixel, so
    tiles stay sharp; the figure is at least `width_inches` wide at 100 dpi.
    """
    height, width = grid.shape[:2]
    scale = max(1, int(np.ceil((width_inches - 1.0) * _DPI / width)))
    y_label_chars = max((len(_tick_label(tick)) for tick in yticks), default=0) if yticks is not None else 0
    left = (0.3 + 0.075 * y_label_chars if yticks is not None else 0.15) + (0.25 if ylabel else 0.0)
    bottom = (0.35 if xticks is not None else 0.1) + (0.25 if xlabel else 0.0)
    top = 0.25 + 0.22 * (title.count("\n") + 1)
    axes_width, axes_height = scale * width / _DPI, scale * height / _DPI
    figure_width = max(width_inches, axes_width + left + 0.2)
    left += (figure_width - axes_width - left - 0.2) / 2  # centre the image
    figure_height = axes_height + top + bottom
    # A Figure with its own Agg canvas, not pyplot's: drawing files never changes a notebook's backend.
    figure = Figure(figsize=(figure_width, figure_height), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes(
        (left / figure_width, bottom / figure_height, axes_width / figure_width, axes_height / figure_height)
    )
    image = grid.squeeze(-1) if grid.shape[-1] == 1 else grid
    axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    # Centred over the image, not the figure: row labels can make the left margin wide.
    figure.suptitle(title, x=(left + axes_width / 2) / figure_width, y=1 - 0.12 / figure_height, va="top")
    for ticks, size, set_ticks, set_labels in (
        (xticks, width, axes.set_xticks, axes.set_xticklabels),
        (yticks, height, axes.set_yticks, axes.set_yticklabels),
    ):
        if ticks is None:
            set_ticks([])
            continue
        ticks = list(ticks)
        step = 1 if isinstance(ticks[0], str) else max(1, -(-len(ticks) // 10))
        centres = (np.arange(len(ticks)) + 0.5) * size / len(ticks) - 0.5
        set_ticks(centres[::step])
        set_labels([_tick_label(tick) for tick in ticks[::step]])
    axes.tick_params(length=2)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    return figure


def save_grid(
    grid: np.ndarray,
    path: str | os.PathLike,
    title: str,
    *,
    xlabel: str = "",
    ylabel: str = "",
    xticks: Sequence[float | str] | None = None,
    yticks: Sequence[float | str] | None = None,
    width_inches: float = 8.0,
) -> None:
    """Writes an image grid as a PNG with a title and, when given, latent-coordinate axes (see `grid_figure`)."""
    figure = grid_figure(
        grid, title, xlabel=xlabel, ylabel=ylabel, xticks=xticks, yticks=yticks, width_inches=width_inches
    )
    figure.savefig(path, dpi=_DPI)


def render_grid(grid: np.ndarray, title: str, **kwargs) -> np.ndarray:
    """`grid_figure` rendered to an RGB uint8 array [height, width, 3] (a GIF frame)."""
    figure = grid_figure(grid, title, **kwargs)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
