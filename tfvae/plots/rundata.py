"""`RunData`: what the figures of a run directory are drawn from, loaded lazily.

Reading a run never trains it: the model comes from the latest checkpoint,
the numbers per latent dimension from `tfvae.evaluate`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfvae import data as data_lib
from tfvae import evaluate
from tfvae import train as train_lib
from tfvae.model import VAE
from tfvae.plots import grids


class RunData:
    """A run directory's pieces for drawing, each loaded on first use.

    `experiment`, `history`, `test` (the whole test split as arrays), `model`
    (latest checkpoint), `means` (posterior means of the test images),
    `statistics` (`tfvae.evaluate.evaluate` with k = 1), `kl` and `activity`
    per latent dimension, and `by_kl` (dimensions, highest KL first).
    """

    def __init__(self, run_dir: str | os.PathLike, grid_size: int = 20):
        self.dir = Path(run_dir)
        self.grid_size = grid_size
        self.experiment = train_lib.load_experiment(self.dir)
        self.beta = self.experiment.train.beta
        self.label = f"{self.experiment.name} (beta = {self.beta:g})"

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        return train_lib.read_history(self.dir)

    @functools.cached_property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole test split as float32 images [n, H, W, C] (binarized as in training) and labels [n]."""
        data = self.experiment.data
        batches = data_lib.load(
            data.name,
            "test",
            batch_size=1000,
            binarize=data.binarize,
            seed=self.experiment.train.seed,
            data_dir=data.data_dir,
            with_labels=True,
        )
        images, labels = zip(*((x.numpy(), y.numpy()) for x, y in batches))
        return np.concatenate(images), np.concatenate(labels)

    @functools.cached_property
    def model(self) -> VAE:
        if tf.train.latest_checkpoint(self.dir / "checkpoints") is None:
            raise train_lib.RunDirError(f"no checkpoint in {self.dir / 'checkpoints'}; train the run first")
        return train_lib.restore_model(self.dir, image_shape=self.test[0].shape[1:])

    def dataset(self) -> tf.data.Dataset:
        return data_lib.from_arrays(*self.test, batch_size=500)

    @functools.cached_property
    def means(self) -> np.ndarray:
        return np.concatenate(
            [
                grids.encode_means(self.model, batch)
                for batch in np.array_split(self.test[0], max(1, len(self.test[0]) // 1000))
            ]
        )

    @functools.cached_property
    def statistics(self) -> dict:
        """`tfvae.evaluate.evaluate` on the test set with one draw per image (k = 1: no log p(x) needed)."""
        return evaluate.evaluate(self.model, self.dataset(), k=1, seed=self.experiment.train.seed)

    @functools.cached_property
    def kl(self) -> np.ndarray:
        """Average KL per latent dimension over the test set, nats: [latent] (the variance of
        the posterior means instead, for a posterior that does not factorise)."""
        per_dimension = self.statistics["kl_per_dimension"]
        return np.asarray(per_dimension if per_dimension is not None else self.activity)

    @functools.cached_property
    def activity(self) -> np.ndarray:
        """Cov_x(E_q[z_d|x]) per latent dimension over the test set: [latent]."""
        return np.asarray(self.statistics["posterior_mean_variance"])

    @functools.cached_property
    def by_kl(self) -> list[int]:
        """Latent dimensions, highest average KL first."""
        return [int(d) for d in np.argsort(-self.kl, kind="stable")]

    def pick(self, indices: Sequence[int]) -> list[int]:
        n = len(self.test[0])
        return [index for index in indices if index < n] or [0]
