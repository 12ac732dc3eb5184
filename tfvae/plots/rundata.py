"""`RunData`: a run directory opened for drawing, and the numbers its figures need, loaded lazily.

Reading a run never trains it: `tfvae.rundir.open_run` gives the
experiment, history, test images and the model of the latest checkpoint; the
numbers per latent dimension come from `tfvae.evaluation`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from tfvae import data as data_lib
from tfvae import evaluation, protocol, rundir


class RunData(rundir.Run):
    """A `tfvae.rundir.Run` with what the figures add, each computed on first use.

    `test` (the test images and labels), `means` (posterior means of the test
    images), `statistics` (`tfvae.evaluation.evaluate` with k = 1), `kl` and
    `activity` per latent dimension, and `by_kl` (dimensions, highest KL
    first).
    """

    def __init__(self, run_dir: str | os.PathLike, grid_size: int = 20, model=None):
        super().__init__(run_dir, model)
        self.grid_size = grid_size
        self.beta = self.experiment.train.beta
        self.label = f"{self.experiment.name} (beta = {self.beta:g})"

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole test split: float32 images [n, H, W, C] (binarized as in training) and labels [n]."""
        return self.test_images, self.test_labels

    def dataset(self) -> data_lib.ArraySource:
        return data_lib.from_arrays(self.test_images, self.test_labels, batch_size=500)

    @property
    def takes_class(self) -> bool:
        """Whether the model decodes with each image's class too (its side data includes "label")."""
        return "label" in protocol.side_data_needed(self.model)

    def for_images(self, indices: Sequence[int]):
        """What decodes test images `indices`: the model given their side data (itself, for most models)."""
        return protocol.with_side_data(self.model, {"label": self.test_labels[list(indices)]})

    def for_class(self, label: int | None):
        """What decodes any code as class `label`: the model given that label (itself, for most models, and
        for None)."""
        return self.model if label is None else protocol.with_side_data(self.model, {"label": int(label)})

    @functools.cached_property
    def means(self) -> np.ndarray:
        return evaluation.posterior_means(self.model, self.test_images, labels=self.test_labels)

    @functools.cached_property
    def statistics(self) -> dict:
        """`tfvae.evaluation.evaluate` on the test set with one draw per image (k = 1: no log p(x) needed)."""
        return evaluation.evaluate(self.model, self.dataset(), k=1, seed=self.experiment.train.seed)

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
        n = len(self.test_images)
        return [index for index in indices if index < n] or [0]
