"""Training: a `tf.GradientTape` step, and `fit`, which owns a run directory.

Running `fit` again on the same run directory with the same config continues
from the last checkpoint, and ends with the same weights as a run that was
never interrupted (bit for bit with `train.deterministic`): the checkpoint
holds the weights, Adam's slots, the step counter, the random generator, the
position of the input pipeline and the loss sums of the current logging
interval. Checkpoints are written at each epoch end (and every
`train.checkpoint_every` steps); history.csv is written just before each
checkpoint and trimmed back to the checkpoint on resume, so every logged step
appears exactly once.

The steady state keeps Python out of the inner loop: one compiled call runs
every step up to the next logging point, accumulating the loss terms on the
device; Python reads them once per logging interval.

A non-finite loss or gradient stops training with `NonFiniteError`, naming
the step and the term, before the bad update is applied and without writing
a checkpoint; with `train.on_nonfinite = "skip"` the batch is skipped and
counted in history.csv's `skipped` column instead.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sonnet as snt
import tensorflow as tf
from tqdm.auto import tqdm

from tfvae import data as data_lib
from tfvae import model as model_lib
from tfvae import devices, objectives, precision, rundir
from tfvae.config import Experiment, TrainConfig
from tfvae.model import VAE

# The run-directory helpers most callers reach through this module.
from tfvae.rundir import (  # noqa: F401
    HISTORY_COLUMNS,
    RunDirError,
    load_datasets,
    load_experiment,
    read_history,
    restore_model,
    run_summary,
    write_atomically,
)

# A hook is called after each row of history with (step, model, row).
Hook = Callable[[int, VAE, dict], None]
# What can go non-finite in a step, in the order it is checked.
CHECKED_TERMS = ("loss", "reconstruction", "kl", "gradient")


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss term or gradient."""


@dataclasses.dataclass
class FitResult:
    """What `fit` leaves behind: the trained model and its history."""

    model: VAE
    history: pd.DataFrame
    run_dir: Path


class LoopState(snt.Module):
    """The training loop's own variables, checkpointed with the model.

    step: steps taken. sums / count: example-weighted sums of the terms
    (loss, reconstruction, kl) and the number of examples since the last
    history row. skipped: batches skipped as non-finite. bad_step / bad_term:
    the step and the index in CHECKED_TERMS of a non-finite step (-1: none).
    """

    def __init__(self):
        super().__init__(name="loop_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.sums = tf.Variable(tf.zeros([3]), trainable=False, name="sums")
        self.count = tf.Variable(0.0, trainable=False, name="count")
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
        self.bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_step")
        self.bad_term = tf.Variable(-1, dtype=tf.int32, trainable=False, name="bad_term")

    def take_interval_means(self) -> objectives.Terms:
        """The interval's mean terms (NaN if every batch was skipped); resets the sums."""
        count = float(self.count.numpy())
        means = self.sums.numpy() / count if count else np.full(3, np.nan)
        self.sums.assign(tf.zeros([3]))
        self.count.assign(0.0)
        return objectives.Terms(*means.tolist())


def loss_and_gradients(
    model: VAE, images: tf.Tensor, settings: TrainConfig, kl_weight: tf.Tensor, seed: tf.Tensor
) -> tuple[objectives.Terms, list[tf.Tensor]]:
    """The batch-mean training terms (see `objectives.training_terms`) and the loss's gradients."""
    with tf.GradientTape() as tape:
        terms = objectives.training_terms(model, images, settings, kl_weight, seed)
    return terms, precision.gradients(tape, terms.loss, model.trainable_variables, settings.precision)


def learning_rate(settings: TrainConfig, step) -> tf.Tensor:
    """The learning rate in effect at global step `step` (a float32 scalar), by `settings.lr_schedule`.

    "constant": settings.learning_rate. "exponential": learning_rate *
    lr_decay_rate ** (step / lr_decay_steps). `step` is a Python int or an
    integer tensor.
    """
    rate = tf.constant(settings.learning_rate, tf.float32)
    if settings.lr_schedule == "constant":
        return rate
    if settings.lr_schedule == "exponential":
        progress = tf.cast(step, tf.float32) / float(settings.lr_decay_steps)
        return rate * tf.pow(tf.constant(settings.lr_decay_rate, tf.float32), progress)
    raise ValueError(f"unknown learning-rate schedule {settings.lr_schedule!r}")


def train_step(
    model: VAE, optimizer: snt.Optimizer, images: tf.Tensor, settings: TrainConfig, step: tf.Tensor, seed: tf.Tensor
) -> objectives.Terms:
    """One gradient step at global step `step`; returns the batch-mean terms (nats per image)."""
    terms, gradients = loss_and_gradients(model, images, settings, objectives.kl_weight(settings, step), seed)
    if isinstance(optimizer.learning_rate, tf.Variable):
        optimizer.learning_rate.assign(learning_rate(settings, step))
    optimizer.apply(gradients, model.trainable_variables)
    return terms


def make_train_loop(
    model: VAE, optimizer: snt.Optimizer, settings: TrainConfig, rng: tf.random.Generator, state: LoopState
):
    """A compiled function (iterator, num_steps) that runs up to `num_steps` steps.

    Each step draws its own stateless seed from `rng`, checks that the terms
    and gradients are finite, and only then applies the update and adds the
    terms to `state`. A non-finite step is skipped (counted in
    `state.skipped`) or, by default, recorded in `state.bad_step` /
    `state.bad_term` and ends the call before the step is counted.
    """
    skip = settings.on_nonfinite == "skip"

    @tf.function
    def run_steps(iterator: Iterator, num_steps: tf.Tensor) -> None:
        for _ in tf.range(num_steps):
            images = next(iterator)
            weight = objectives.kl_weight(settings, state.step)
            terms, gradients = loss_and_gradients(model, images, settings, weight, rng.uniform_full_int([2], tf.int32))
            finite = tf.stack(
                [tf.reduce_all(tf.math.is_finite(term)) for term in terms]
                + [tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])]
            )
            if tf.reduce_all(finite):
                optimizer.learning_rate.assign(learning_rate(settings, state.step))
                optimizer.apply(gradients, model.trainable_variables)
                size = tf.cast(tf.shape(images)[0], tf.float32)
                state.sums.assign_add(size * tf.stack(terms))
                state.count.assign_add(size)
            elif skip:
                state.skipped.assign_add(1)
            else:
                state.bad_step.assign(state.step + 1)
                state.bad_term.assign(tf.cast(tf.argmin(tf.cast(finite, tf.int32)), tf.int32))
                break
            state.step.assign_add(1)

    return run_steps


def build_optimizer(model: VAE, learning_rate: float, name: str = "adam", momentum: float = 0.9) -> snt.Optimizer:
    """The optimizer `name` (see `tfvae.config.OPTIMIZERS`) with its slots created now.

    Sonnet optimizers make their slots (Adam's moments, the momentum
    accumulator) on the first `apply`; that must not happen inside
    `tf.function` loops. A zero update leaves the weights as they are (Adam's
    step is 0 / (0 + eps); SGD and momentum move by lr * 0), and Adam's step
    counter is reset. The learning rate is a variable, so a schedule can set
    it each step.
    """
    rate = tf.Variable(learning_rate, dtype=tf.float32, trainable=False, name="learning_rate")
    optimizers = {
        "adam": lambda: snt.optimizers.Adam(rate),
        "sgd": lambda: snt.optimizers.SGD(rate),
        "momentum": lambda: snt.optimizers.Momentum(rate, momentum),
    }
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(optimizers)}")
    optimizer = optimizers[name]()
    variables = model.trainable_variables
    optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    if hasattr(optimizer, "step"):
        optimizer.step.assign(0)
    return optimizer


def prepare_run_dir(run_dir: str | os.PathLike, experiment: Experiment) -> Path:
    """See `tfvae.rundir.prepare`."""
    return rundir.prepare(run_dir, experiment)


def fit(
    experiment: Experiment,
    run_dir: str | os.PathLike,
    *,
    train_data: tf.data.Dataset | None = None,
    test_data: tf.data.Dataset | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
) -> FitResult:
    """Trains `experiment` in `run_dir`, continuing from its last checkpoint if any.

    Args:
      experiment: what to train (see `tfvae.config`).
      run_dir: where config.json, history.csv and checkpoints/ go.
      train_data, test_data: image datasets to use instead of the ones the
        config names (the training one should shuffle; both yield batches of
        [b, H, W, C] in [0, 1], or `(images, labels)`). Their seeds combine
        with TF's global seed: for a repeatable run, build them right after
        `tf.random.set_seed(experiment.train.seed)`, and build the training
        one with `prefetch=False` (see `tfvae.data`) so that a resumed run
        continues exactly where the checkpoint left off.
      hooks: called with (step, model, row) after each history row.
      progress: show a progress bar.

    Returns:
      A `FitResult` with the model and the history DataFrame (nats per image).

    Raises:
      NonFiniteError: a step's loss or gradient was not finite (the last
        good checkpoint is kept).
      RunDirError, ValueError: an unusable run directory or dataset.
    """
    with rundir.lock(run_dir), devices.placement(experiment.train.device):
        run_dir = rundir.prepare(run_dir, experiment)
        rundir.remove_stale_temporaries(run_dir)
        return _fit_locked(experiment, run_dir, train_data, test_data, hooks, progress)


def _fit_locked(experiment, run_dir, train_data, test_data, hooks, progress) -> FitResult:
    settings = experiment.train
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    # TF combines every op seed (weights, and the pipelines loaded here) with
    # the global seed, so a run is repeatable only if this comes first.
    tf.random.set_seed(settings.seed)
    if train_data is None:
        train_data = rundir.load_split(experiment, "train")
    if test_data is None:
        test_data = rundir.load_split(experiment, "test")
    train_data, test_data = _images_only(train_data), _images_only(test_data)
    image_shape = data_lib.image_shape(train_data)
    _check_images(next(iter(train_data)), "training", experiment.model.likelihood)
    steps_per_epoch = _steps_per_epoch(train_data)
    total_steps = settings.epochs * steps_per_epoch

    model = model_lib.build(experiment.model, image_shape)
    model(tf.zeros([1, *image_shape]))  # create the weights now, from the data's shape
    optimizer = build_optimizer(model, settings.learning_rate, settings.optimizer, settings.momentum)
    rng = tf.random.Generator.from_seed(settings.seed)
    state = LoopState()
    iterator = iter(train_data.repeat().prefetch(2))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, rng=rng, iterator=iterator, state=state)
    restored = rundir.restore_latest(checkpoint, rundir.checkpoint_dir(run_dir))  # the last good checkpoint
    manager = tf.train.CheckpointManager(checkpoint, rundir.checkpoint_dir(run_dir), settings.max_checkpoints)

    history = read_history(run_dir)
    rows = history[history["step"] <= int(state.step.numpy())].to_dict("records")
    wall_offset = float(rows[-1]["wall_time"]) if rows else 0.0
    run_steps = make_train_loop(model, optimizer, settings, rng, state)
    bar = tqdm(total=total_steps, initial=int(state.step.numpy()), disable=not progress, unit="step", desc=experiment.name)
    started = time.perf_counter()
    step = int(state.step.numpy())
    while step < total_steps:
        target = min(
            _next_multiple(step, settings.log_every),
            _next_multiple(step, steps_per_epoch),
            _next_multiple(step, settings.checkpoint_every or total_steps),
            total_steps,
        )
        run_steps(iterator, tf.constant(target - step, tf.int64))
        if int(state.bad_step.numpy()) >= 0:
            bar.close()
            raise _nonfinite_error(state, restored)
        bar.update(target - step)
        step = target
        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if step % settings.log_every == 0 or end_of_epoch:
            row = _history_row(step, steps_per_epoch, state, wall_offset + time.perf_counter() - started)
            # The KL weight and learning rate of the row's last step.
            row.update(
                beta=float(objectives.kl_weight(settings, step - 1)),
                learning_rate=float(learning_rate(settings, step - 1)),
            )
            if end_of_epoch:
                test_terms = objectives.average_over_dataset(model, test_data, settings.beta, seed=settings.seed)
                row.update({f"test_{name}": float(value) for name, value in test_terms._asdict().items()})
            rows.append(row)
            bar.set_postfix(epoch=f"{row['epoch']:.2f}", loss=f"{row['train_loss']:.2f}", test=f"{row['test_loss']:.2f}")
            for hook in hooks:
                hook(step, model, row)
        if end_of_epoch or (settings.checkpoint_every and step % settings.checkpoint_every == 0):
            rundir.write_history(run_dir, rows)  # before the checkpoint: see the module docstring
            restored = manager.save(checkpoint_number=step)
    bar.close()
    return FitResult(model=model, history=pd.DataFrame(rows, columns=HISTORY_COLUMNS), run_dir=run_dir)


def _nonfinite_error(state: LoopState, last_checkpoint: str | None) -> NonFiniteError:
    term = CHECKED_TERMS[int(state.bad_term.numpy())]
    kept = (
        f"the last good checkpoint, {Path(last_checkpoint).name}, is kept"
        if last_checkpoint
        else "no checkpoint had been written yet"
    )
    return NonFiniteError(
        f"training stopped: the {term} was not finite at step {int(state.bad_step.numpy())}; {kept}. "
        "Check the data for NaN/Inf pixels, lower train.learning_rate, or set train.on_nonfinite=skip."
    )


def _check_images(batch: tf.Tensor, which: str, likelihood: str) -> None:
    """A clear error for a first batch that the model cannot take."""
    if batch.shape.rank != 4 or not batch.dtype.is_floating:
        raise ValueError(
            f"the {which} dataset must yield float images [batch, height, width, channels]; "
            f"got {batch.dtype.name} of shape {batch.shape}"
        )
    values = batch.numpy()
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the {which} dataset's first batch holds NaN or Inf pixels")
    if likelihood in ("bernoulli",) and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"a {likelihood} likelihood needs pixels in [0, 1]; the {which} dataset's first batch "
            f"spans [{values.min():g}, {values.max():g}]"
        )


def _images_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    if isinstance(dataset.element_spec, tuple):
        return dataset.map(lambda images, *_: images)
    return dataset


def _steps_per_epoch(dataset: tf.data.Dataset) -> int:
    batches = int(dataset.cardinality().numpy())
    if batches <= 0:
        raise ValueError("the training dataset must be finite and non-empty (one pass is one epoch)")
    return batches


def _next_multiple(value: int, period: int) -> int:
    return (value // period + 1) * period


def _history_row(step: int, steps_per_epoch: int, state: LoopState, wall_time: float) -> dict:
    row = {column: math.nan for column in HISTORY_COLUMNS}
    row.update(
        step=step,
        epoch=round(step / steps_per_epoch, 4),
        skipped=int(state.skipped.numpy()),
        wall_time=round(wall_time, 3),
        **{f"train_{name}": value for name, value in state.take_interval_means()._asdict().items()},
    )
    return row
