"""GIFs: interpolations that go there and back, and pictures of training as it happens.

`save_gif` writes frames with Pillow (a matplotlib dependency) and loops
forever. `ProgressRecorder` is a training hook: `tfvae.train.fit(...,
hooks=[recorder])` calls it after each history row, and it keeps the latent
manifold and the reconstructions of fixed images as they were at that step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tfvae import factors
from tfvae import protocol
from tfvae.config import Experiment
from tfvae.model import VAE, as_images
from tfvae.plots import grids


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, duration_ms: int | Sequence[int] = 120) -> Path:
    """Writes RGB uint8 frames [H, W, 3] (all one size) as a GIF that loops forever.

    duration_ms: one value for every frame, or one per frame.
    """
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    images = []
    for frame in frames:
        frame = np.asarray(frame, np.uint8)
        if frame.ndim == 3 and (frame == frame[..., :1]).all():
            frame = frame[..., 0]  # grey: 256 exact levels, no palette search
        images.append(Image.fromarray(frame) if frame.ndim == 2 else Image.fromarray(frame).quantize(colors=256))
    durations = list(duration_ms) if isinstance(duration_ms, Sequence) else duration_ms
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False, disposal=1
    )
    return Path(path)


def there_and_back(n: int) -> list[int]:
    """Frame order 0, 1, ..., n-1, n-2, ..., 1: a loop that never shows a frame twice in a row."""
    return list(range(n)) + list(range(n - 2, 0, -1))


def interpolation_frames(
    models: VAE | Mapping[str, VAE],
    image_a: np.ndarray,
    image_b: np.ndarray,
    steps: int = 16,
    title: str = "Decoded means between two test images",
) -> list[np.ndarray]:
    """Frames for `interpolation_gif`: a row per model of [image a | decoded at t | image b],
    for t going 0 -> 1 -> 0 over `steps` points each way (2 * steps - 2 frames)."""
    named = {"": models} if protocol.is_model(models) else dict(models)
    image_a, image_b = as_images([image_a, image_b]).numpy()
    rows = []
    for model in named.values():
        start, end = grids.encode_means(model, np.stack([image_a, image_b]))
        rows.append(grids.decode_means(model, grids.interpolation_codes(start, end, steps)))
    ts = np.linspace(0.0, 1.0, steps)
    frames = []
    for index in there_and_back(steps):
        tiles = np.asarray([[image_a, decoded[index], image_b] for decoded in rows], np.float32)
        frames.append(
            grids.render_grid(
                grids.tile(tiles, padding=2),
                f"{title}\nz = (1 - t) E[z|a] + t E[z|b],  t = {ts[index]:.2f}",
                xticks=["image a", "decoded", "image b"],
                yticks=list(named) if len(named) > 1 else None,
                width_inches=6.5,
            )
        )
    return frames


def interpolation_gif(
    models: VAE | Mapping[str, VAE],
    image_a: np.ndarray,
    image_b: np.ndarray,
    path: str | os.PathLike,
    steps: int = 16,
    **kwargs,
) -> Path:
    """Writes `interpolation_frames` as a looping GIF; the ends are held a little longer."""
    frames = interpolation_frames(models, image_a, image_b, steps, **kwargs)
    durations = [600 if index in (0, steps - 1) else 90 for index in there_and_back(steps)]
    return save_gif(frames, path, durations)


class ProgressRecorder:
    """A training hook that keeps pictures of the model as it trains, for GIFs.

    Every `every` steps (at the first history row at or after each multiple,
    and always at the first and last rows it sees) it decodes a
    `grid_size` x `grid_size` grid of standard Normal quantiles over latent
    dimensions 0 and 1, and reconstructs `images` [n, H, W, C]. Frames are
    kept as small uint8 arrays; `save_gifs(folder)` draws and writes them.

        recorder = ProgressRecorder(test_images[:8], every=200)
        tfvae.fit(experiment, run_dir, hooks=[recorder])
        recorder.save_gifs(run_dir / "figures")
    """

    def __init__(self, images: np.ndarray, every: int = 100, grid_size: int = 12):
        images = as_images(images).numpy()  # uint8 is scaled by 1/255
        if images.ndim != 4 or not len(images):
            raise ValueError(f"images must be a non-empty batch [n, H, W, C]; got shape {images.shape}")
        if every <= 0 or grid_size <= 0:
            raise ValueError(f"every and grid_size must be positive; got every={every}, grid_size={grid_size}")
        self.images = images
        self.every = int(every)
        self.grid_size = int(grid_size)
        self.records: list[dict] = []  # step, epoch, manifold and reconstruction grids (uint8)
        self._latest: dict | None = None
        self._latent_size = 2

    @classmethod
    def for_experiment(
        cls, experiment: Experiment, every: int | None = None, grid_size: int = 12, count: int = 8
    ) -> ProgressRecorder:
        """A recorder of the first `count` test images of `experiment`'s dataset (binarized as in
        training), recording every `every` steps (default: every 4th history row, 4 * `train.log_every`,
        about 13 frames for 10 epochs of MNIST at batch 128)."""
        data = experiment.data
        test = factors.load(
            data.name,
            "test",
            batch_size=count,
            binarize=data.binarize,
            seed=experiment.train.seed,
            data_dir=data.data_dir,
        )
        return cls(next(iter(test)).numpy(), every=every or 4 * experiment.train.log_every, grid_size=grid_size)

    def __call__(self, step: int, model: VAE, row: Mapping) -> None:
        due = not self.records or step >= (self.records[-1]["step"] // self.every + 1) * self.every
        self._latent_size = model.latent_size
        record = {"step": int(step), "epoch": float(row.get("epoch", np.nan))}
        xs, ys, dims = grids.manifold_axes(model.latent_size, grids.quantile_coordinates(self.grid_size))
        for name, grid in (
            ("manifold", grids.latent_grid(model, xs, ys, dims)),
            ("reconstructions", grids.reconstruction_grid(model, self.images)),
        ):
            record[name] = np.round(grid * 255).astype(np.uint8)
        if due:
            self.records.append(record)
            self._latest = None
        else:
            self._latest = record

    def frames(self) -> list[dict]:
        """The kept records in step order, the last row seen included."""
        return self.records + ([self._latest] if self._latest is not None else [])

    def save_gifs(self, folder: str | os.PathLike, duration_ms: int = 150) -> list[Path]:
        """Writes progress_manifold.gif and progress_reconstructions.gif; returns their paths
        (none if nothing was recorded, e.g. a finished run trained no further)."""
        records = self.frames()
        if not records:
            return []
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        coordinates = grids.quantile_coordinates(self.grid_size)
        xs, ys, dims = grids.manifold_axes(self._latent_size, coordinates)
        others = " (others at 0)" if self._latent_size > 2 else ""
        durations = [duration_ms] * (len(records) - 1) + [1500]  # rest on the final picture
        written = []
        for name, title, options in (
            (
                "manifold",
                f"Decoded means over Normal quantiles of z[{dims[0]}], z[{dims[1]}]{others}",
                {
                    "xlabel": f"z[{dims[0]}]",
                    "ylabel": f"z[{dims[1]}]",
                    "xticks": xs,
                    "yticks": ys[::-1],
                    "width_inches": 7.5,
                },
            ),
            (
                "reconstructions",
                "Test images (top) and reconstructions (bottom)",
                {"yticks": ["original", "reconstructed"], "width_inches": 8.0},
            ),
        ):
            frames = [
                grids.render_grid(
                    record[name].astype(np.float32) / 255,
                    f"{title}\nstep {record['step']:6d}, epoch {record['epoch']:5.2f}",
                    **options,
                )
                for record in records
            ]
            written.append(save_gif(frames, folder / f"progress_{name}.gif", durations))
        return written
