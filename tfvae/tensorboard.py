"""TensorBoard event files for a run, written by a training hook.

    logger = TensorBoardLogger.for_experiment(experiment, run_dir)
    tfvae.fit(experiment, run_dir, hooks=[logger])
    # tensorboard --logdir runs/     (pip install tensorboard to view)

Layout: RUN_DIR/tensorboard/train and RUN_DIR/tensorboard/test, so the train
and test curves of a tag share one chart. At every history row, in train/:
`loss`, `distortion` (-log p(x|z)), `rate` (the KL) (nats per image, means over the logging
interval), `kl_weight` (the schedule's weight at the row's last step) and
`learning_rate`. At every evaluation (epoch end), in test/: the same three
terms on the test set, `reconstructions` (test images, left, beside their
reconstructions, right) and `samples` (decoded draws from the prior at a fixed
seed, so the same latents are seen as training goes on).

A resumed run writes its rows again from the last checkpoint; TensorBoard
drops the older points past a step that goes back (event files of version 2).
The hook reads only the model and the history row; it never changes training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae import protocol, rundir
from tfvae.config import Experiment
from tfvae.model import VAE

TERMS = ("loss", "distortion", "rate")
SPLITS = ("train", "test")


def log_dir(run_dir: str | os.PathLike) -> Path:
    """RUN_DIR/tensorboard: give it (or a folder of runs) to `tensorboard --logdir`."""
    return Path(run_dir) / "tensorboard"


class TensorBoardLogger:
    """A `fit` hook that writes scalars at each history row and images at each evaluation.

    Args:
      directory: where the `train` and `test` event folders go.
      images: test images [n, H, W, C] in [0, 1] to reconstruct, or None for no reconstructions.
      labels: their labels [n], for a model that needs them (whose samples are then of classes 0, 1, 2, ...).
      learning_rate: logged as `learning_rate` when given.
      num_samples: images drawn from the prior at each evaluation (0: none).
      seed: the stateless seed of those draws, the same at every evaluation.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        images: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        *,
        learning_rate: float | None = None,
        num_samples: int = 16,
        seed: int = 0,
    ):
        if images is not None:
            images = np.asarray(images, np.float32)
            if images.ndim != 4 or not len(images):
                raise ValueError(f"images must be a non-empty batch [n, H, W, C]; got shape {images.shape}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.directory = Path(directory)
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        self.learning_rate = learning_rate
        self.num_samples = int(num_samples)
        self.seed = tf.constant([seed, 0], tf.int32)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}  # made at the first row, once fit accepted the run dir

    @classmethod
    def for_experiment(cls, experiment: Experiment, run_dir: str | os.PathLike, count: int = 8) -> TensorBoardLogger:
        """A logger into RUN_DIR/tensorboard showing the first `count` test images of `experiment`'s data."""
        images, labels = rundir.first_test_images(experiment, count, with_labels=True)
        return cls(
            log_dir(run_dir),
            images,
            labels,
            learning_rate=experiment.train.learning_rate,
            seed=experiment.train.seed,
        )

    def __call__(self, step: int, model: VAE, row: Mapping) -> None:
        if not self._writers:
            self._writers = {split: tf.summary.create_file_writer(str(self.directory / split)) for split in SPLITS}
        with self._writers["train"].as_default(step=step):
            for term in TERMS:
                _scalar(term, row.get(f"train_{term}"))
            _scalar("kl_weight", row.get("beta"))
            _scalar("learning_rate", row.get("learning_rate", self.learning_rate))  # the schedule's, else the config's
        if _is_number(row.get("test_loss")):
            with self._writers["test"].as_default(step=step):
                for term in TERMS:
                    _scalar(term, row.get(f"test_{term}"))
                self._write_images(model)
        for writer in self._writers.values():
            writer.flush()

    def _write_images(self, model: VAE) -> None:
        side = {} if self.labels is None else {"label": tf.constant(self.labels)}
        if self.images is not None and set(protocol.side_data_needed(model)) <= set(side):
            images = tf.constant(self.images)
            pairs = tf.concat([images, protocol.reconstruct(protocol.with_side_data(model, side), images)], axis=2)
            tf.summary.image("reconstructions", _displayable(pairs), max_outputs=len(self.images))  # [n, H, 2W, C]
        if self.num_samples:
            drawn = protocol.with_side_data(model, protocol.side_data_for_samples(model, self.num_samples))
            samples = protocol.sample(drawn, self.num_samples, seed=self.seed)
            tf.summary.image("samples", _displayable(samples), max_outputs=self.num_samples)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(float(value))


def _scalar(name: str, value) -> None:
    if _is_number(value):
        tf.summary.scalar(name, float(value))


def _displayable(images: tf.Tensor) -> tf.Tensor:
    """Images in [0, 1] with 1 or 3 channels (TensorBoard's image plugin takes 1, 3 or 4)."""
    images = tf.clip_by_value(tf.convert_to_tensor(images, tf.float32), 0.0, 1.0)
    channels = images.shape[-1]
    if channels not in (1, 3, 4):
        images = images[..., :1]
    return images


__all__ = ["TERMS", "TensorBoardLogger", "log_dir"]
