"""`draw_run`: every figure that applies to a run directory, written into RUN_DIR/figures/.

It reads config.json, history.csv and the latest checkpoint; it never
trains. Numbers (KL per dimension, activity, anomaly scores) come from
`tfvae.evaluate`; the figures come from `charts`, `grids` and `animation`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tfvae import data as data_lib
from tfvae import evaluation, factor_evaluation, factors
from tfvae.plots import animation, charts, grids
from tfvae.plots.rundata import RunData

# Test images shown by the classic Bernoulli walkthrough (003).
DEFAULT_RECONSTRUCTION_INDICES = (1, 4, 12, 15, 22)
# Test images (a, b) of the interpolation; in TFDS's MNIST test order a 0 and a 3.
DEFAULT_INTERPOLATION_INDICES = (1, 22)
# The offset strip adds t * (mean code of class b - mean code of class a) to codes of class a.
DEFAULT_OFFSET_CLASSES = (4, 9)
_OFFSET_TS = np.linspace(-1.0, 2.0, 13).astype(np.float32)
_NOISE_IMAGES = 500


class FigureNotDrawn(UserWarning):
    """A figure that does not apply to this run (the CLI shows the reason as one `tfvae: warning:` line)."""


def _loss_curves(run: RunData, folder: Path) -> list[Path]:
    paths = [folder / "loss_curves.png", folder / "loss_curves_log.png"]
    for path, log_scale in zip(paths, (False, True)):
        charts.loss_curves(run.history, run.beta, log_scale=log_scale).save(path, dpi=100, verbose=False)
    return paths


def _reconstructions(run: RunData, folder: Path) -> list[Path]:
    indices = run.pick(DEFAULT_RECONSTRUCTION_INDICES)
    path = folder / "reconstructions.png"
    grids.save_grid(
        grids.reconstruction_grid(run.for_images(indices), run.test[0][indices]),
        path,
        "Test images and their reconstructions, decoded at the posterior mean" + (" (given their labels)"
                                                                                 if run.takes_class else ""),
        xticks=[f"test #{index}" for index in indices],
        yticks=["original", "reconstructed"],
    )
    return [path]


def _prior_samples(run: RunData, folder: Path) -> list[Path]:
    _not_for_conditional(run, "prior_samples", "its decoder needs a class; class_samples draws a row per class")
    path = folder / "prior_samples.png"
    grids.save_grid(
        grids.prior_sample_grid(run.model, 8, 8, seed=run.experiment.train.seed),
        path,
        f"Means of p(x|z) for 64 draws z ~ N(0, I), {run.model.latent_size}-d latent",
    )
    return [path]


def _class_samples(run: RunData, folder: Path) -> list[Path]:
    if not run.takes_class:
        raise FigureNotDrawn("class_samples: not drawn: the model does not take a class (model.conditional=true does)")
    path = folder / "class_samples.png"
    classes = list(range(run.model.num_classes))
    grids.save_grid(
        grids.class_sample_grid(run.model, classes, cols=10, seed=run.experiment.train.seed),
        path,
        "Means of p(x|z, y): a row per class y, a column per draw z ~ p(z)\n"
        "(each column's z is the same in every row: the class changes, the style stays)",
        xlabel="draw of z",
        ylabel="class y",
        yticks=[str(label) for label in classes],
        width_inches=7.0,
    )
    return [path]


def _figure_class(run: RunData) -> tuple[int | None, str]:
    """The class a conditional model's latent figures are decoded as (that of the traversal image), and its words."""
    if not run.takes_class:
        return None, ""
    label = int(run.test_labels[run.pick(DEFAULT_RECONSTRUCTION_INDICES)[0]])
    return label, f", decoded as class {label}"


def _not_for_conditional(run: RunData, name: str, reason: str) -> None:
    if run.takes_class:
        raise FigureNotDrawn(f"{name}: not drawn for a conditional VAE: {reason}")


def _manifold(
    run: RunData, folder: Path, coordinates: np.ndarray, dims: tuple[int, int], path: Path, spacing: str
) -> list[Path]:
    xs, ys, dims = grids.manifold_axes(run.model.latent_size, coordinates, dims)
    others = run.model.latent_size - len(set(dims))
    rest = f", the other {others} at 0" if others else ""
    label, given = _figure_class(run)
    grids.save_grid(
        grids.latent_grid(run.for_class(label), xs, ys, dims),
        path,
        f"Decoded means over a {len(xs)}x{len(ys)} grid of z[{dims[0]}], z[{dims[1]}] {spacing}{rest}{given}",
        xlabel=f"z[{dims[0]}]",
        ylabel=f"z[{dims[1]}]",
        xticks=xs,
        yticks=ys[::-1],
        width_inches=9.0,
    )
    return [path]


def _latent_grid(run: RunData, folder: Path) -> list[Path]:
    coordinates = grids.quantile_coordinates(run.grid_size)
    return _manifold(run, folder, coordinates, (0, 1), folder / "latent_grid.png",
                     "at standard Normal quantiles 0.05..0.95")


def _latent_grid_linear(run: RunData, folder: Path) -> list[Path]:
    dims = (0, 1) if run.model.latent_size <= 2 else tuple(sorted(run.by_kl[:2]))
    coordinates = grids.linear_coordinates(run.grid_size, 3.0)
    return _manifold(run, folder, coordinates, dims, folder / "latent_grid_linear.png", "evenly spaced in [-3, 3]")


def _traversals(run: RunData, folder: Path) -> list[Path]:
    index = run.pick(DEFAULT_RECONSTRUCTION_INDICES)[0]
    values = grids.linear_coordinates(11, 3.0)
    path = folder / "traversals.png"
    label, given = _figure_class(run)
    grids.save_grid(
        grids.traversal_grid(run.for_class(label), run.means[index], run.by_kl, values),
        path,
        f"Traversals: each row sweeps one dimension, the others at E[z|x] of test image #{index}{given}\n"
        "rows sorted by average KL (nats), highest first",
        xlabel="value of the swept dimension",
        ylabel="swept dimension",
        xticks=values,
        yticks=[f"z[{d}] KL {run.kl[d]:.2f}" for d in run.by_kl],
        width_inches=8.0,
    )
    return [path]


def _factor_traversals(run: RunData, folder: Path) -> list[Path]:
    index = run.pick(DEFAULT_RECONSTRUCTION_INDICES)[0]
    dataset = factor_evaluation.factor_dataset(run.experiment)
    table = factor_evaluation.latent_factors(run.model, dataset, binarize=run.experiment.data.binarize)
    path = folder / "factor_traversals.png"
    grids.save_factor_traversal(
        run.model, run.means[index], table, path,
        f"Traversals around E[z|x] of test image #{index}, rows sorted by average KL, highest first;\n"
        f"each named by the factor it is most informative about ({factor_evaluation.NUM_POINTS:,} "
        "images)",
    )
    return [path]


def _latent_scatter(run: RunData, folder: Path) -> list[Path]:
    dims = (0, 1) if run.model.latent_size <= 2 else tuple(run.by_kl[:2])
    kl = run.kl if run.model.latent_size > 2 else None
    path = folder / "latent_scatter.png"
    charts.latent_scatter(run.means, run.test[1], dims, kl=kl).save(path, dpi=100, verbose=False)
    return [path]


def _interpolation(run: RunData, folder: Path, others: Sequence[RunData] = ()) -> list[Path]:
    _not_for_conditional(run, "interpolation", "its two end images may be of two classes, and the decoder takes one")
    a, b = run.pick(DEFAULT_INTERPOLATION_INDICES)[0], run.pick(DEFAULT_INTERPOLATION_INDICES[1:])[0]
    image_a, image_b = run.test[0][a], run.test[0][b]
    models = {}
    for number, other in enumerate((run, *others), start=1):
        models[other.label if other.label not in models else f"{other.label} #{number}"] = other.model
    paths = [folder / "interpolation.png", folder / "interpolation.gif"]
    grids.save_grid(
        grids.interpolation_grid(list(models.values()), image_a, image_b, steps=10),
        paths[0],
        f"Decoded means along the line from E[z|x] of test #{a} to test #{b}",
        xticks=["image a", *[f"{t:.2f}" for t in np.linspace(0, 1, 10)], "image b"],
        xlabel="t in (1 - t) E[z|a] + t E[z|b]",
        yticks=list(models) if len(models) > 1 else None,
        width_inches=9.0,
    )
    animation.interpolation_gif(
        models if len(models) > 1 else run.model,
        image_a,
        image_b,
        paths[1],
        steps=16,
        title=f"Interpolating test #{a} -> #{b}",
    )
    return paths


def _latent_offset(run: RunData, folder: Path) -> list[Path]:
    _not_for_conditional(run, "latent_offset", "the class is the decoder's input, not a direction in z")
    labels = run.test[1]
    source, target = DEFAULT_OFFSET_CLASSES
    if not (np.any(labels == source) and np.any(labels == target)):
        raise FigureNotDrawn(f"latent_offset: not drawn: the test labels hold no class {source} or {target}")
    direction = run.means[labels == target].mean(0) - run.means[labels == source].mean(0)
    rows = np.flatnonzero(labels == source)[:5]
    path = folder / "latent_offset.png"
    grids.save_grid(
        grids.offset_grid(run.model, run.means[rows], direction, _OFFSET_TS),
        path,
        f"E[z|x] + t * (mean code of class {target} - mean code of class {source}), for test images of class {source}",
        xlabel="t",
        ylabel="test image",
        xticks=_OFFSET_TS,
        yticks=[f"#{row}" for row in rows],
        width_inches=9.0,
    )
    return [path]


def _kl_per_dimension(run: RunData, folder: Path) -> list[Path]:
    if run.statistics["kl_per_dimension"] is None:
        raise FigureNotDrawn("kl_per_dimension: not drawn: the posterior or prior does not factorise over the latent "
                             "dimensions, so the KL has no share per dimension (traversals are sorted by the variance "
                             "of the posterior means instead)")
    path = folder / "kl_per_dimension.png"
    charts.kl_per_dimension_chart(run.kl, run.activity, evaluation.ACTIVE_UNIT_THRESHOLD).save(
        path, dpi=100, verbose=False
    )
    return [path]


def _anomaly_scores(run: RunData, folder: Path) -> list[Path]:
    _not_for_conditional(run, "anomaly_scores", "an unlabelled image (the noise) has no score -log p(x|y)")
    images = run.test[0]
    rng = np.random.default_rng(run.experiment.train.seed)
    noise = rng.random((_NOISE_IMAGES, *images.shape[1:]), dtype=np.float32)
    if run.experiment.data.binarize != "none":  # scored as the model saw its data: binary
        noise = (noise >= 0.5).astype(np.float32)
    scores = pd.concat(
        [
            evaluation.anomaly_scores(run.model, run.dataset()).assign(source="test images"),
            evaluation.anomaly_scores(run.model, data_lib.from_arrays(noise, batch_size=500)).assign(
                source="uniform noise" + (" (binarized)" if run.experiment.data.binarize != "none" else "")
            ),
        ],
        ignore_index=True,
    )
    path = folder / "anomaly_scores.png"
    charts.anomaly_histograms(scores).save(path, dpi=100, verbose=False)
    return [path]


# name -> (drawer, applies to this run?)
FIGURES: dict[str, tuple[Callable[..., list[Path]], Callable[[RunData], bool]]] = {
    "loss_curves": (_loss_curves, lambda run: True),
    "reconstructions": (_reconstructions, lambda run: True),
    "prior_samples": (_prior_samples, lambda run: not run.takes_class),
    "class_samples": (_class_samples, lambda run: run.takes_class),
    "latent_grid": (_latent_grid, lambda run: True),
    "latent_grid_linear": (_latent_grid_linear, lambda run: True),
    "traversals": (_traversals, lambda run: run.experiment.model.latent_size > 2),
    "factor_traversals": (_factor_traversals, lambda run: factors.is_factor_dataset(run.experiment.data.name)),
    "latent_scatter": (_latent_scatter, lambda run: True),
    "interpolation": (_interpolation, lambda run: True),
    "latent_offset": (_latent_offset, lambda run: not factors.is_factor_dataset(run.experiment.data.name)),
    "kl_per_dimension": (_kl_per_dimension, lambda run: True),
    "anomaly_scores": (_anomaly_scores, lambda run: True),
}


def draw_run(
    run_dir: str | os.PathLike,
    grid_size: int = 20,
    figures: Sequence[str] | None = None,
    compare: Sequence[str | os.PathLike] = (),
    model=None,
) -> list[Path]:
    """Draws the figures of a run into RUN_DIR/figures/ and returns the paths written.

    Args:
      run_dir: a trained run directory (config.json, history.csv, checkpoints/).
      grid_size: tiles per side of the latent manifolds.
      figures: names from `FIGURES` (default: all that apply; traversals need
        a latent of more than 2 dimensions; a conditional model gets
        class_samples in place of prior_samples, and its latent grids and
        traversals are decoded as the class of the traversal image).
      compare: other run directories on the same data, drawn beside this run
        in the interpolation strip and GIF (e.g. an autoencoder next to a VAE).
      model: for a run trained on a model built in Python, that model built
        again; its weights are restored (`tfvae.open_run`).

    Raises:
      ValueError: an unknown figure name; RunDirError: not a trained run directory.
    """
    unknown = sorted(set(figures or ()) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure {', '.join(unknown)}; known figures: {', '.join(FIGURES)}")
    run = RunData(run_dir, grid_size, model)
    folder = run.dir / "figures"
    folder.mkdir(exist_ok=True)
    written = []
    for name in figures or FIGURES:
        draw, applies = FIGURES[name]
        if figures is None and not applies(run):
            continue
        extra = {"others": [RunData(other, grid_size) for other in compare]} if name == "interpolation" else {}
        try:
            written += draw(run, folder, **extra)
        except FigureNotDrawn as reason:
            warnings.warn(str(reason), FigureNotDrawn, stacklevel=2)
    return written
