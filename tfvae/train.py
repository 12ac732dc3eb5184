"""Training: a `tf.GradientTape` step, and `fit`, which owns a run directory.

Running `fit` again on the same run directory with the same config continues
from the last checkpoint, and ends with the same weights as a run that was
never interrupted (bit for bit with `train.deterministic`): the checkpoint
holds the weights, Adam's slots, the step counter and the loss sums of the
current logging interval (and, for a generic `tf.data` pipeline, the random
generator and the pipeline's position). Checkpoints are written at each epoch end (and every
`train.checkpoint_every` steps); history.csv is written just before each
checkpoint and trimmed back to the checkpoint on resume, so every logged step
appears exactly once.

The steady state keeps Python out of the inner loop: one compiled call runs
every step up to the next logging point, accumulating the loss terms on the
device; Python reads them once per logging interval. Training data in memory
(every `tfvae.data.from_arrays` dataset, so every named dataset) skips
`tf.data` altogether (`make_array_runner`): the steps run inside one
XLA-compiled loop (train.jit_compile), each batch gathered from the images
held on the device, and the pass order and the draws of z are stateless
functions of the step counter. Other datasets go through an iterator
(`make_iterator_runner`). Both run `checked_step`, the one place a step's
update is computed.

A non-finite loss or gradient stops training with `NonFiniteError`, naming
the step and the term, without writing a checkpoint or calling a hook (the
last good checkpoint is what a rerun continues from); with
`train.on_nonfinite = "skip"` the batch is skipped, leaving the weights
untouched, and counted in history.csv's `skipped` column instead.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import sonnet as snt
import tensorflow as tf
from tqdm.auto import tqdm

from tfvae import data as data_lib
from tfvae import model as model_lib
from tfvae import devices, distribute, objectives, precision, rundir
from tfvae.optimizers import build_optimizer  # noqa: F401  (the public name, re-exported)
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
# The largest test set (float32 bytes) that fit keeps in memory for its end-of-epoch test ELBO.
_MAX_HELD_TEST_BYTES = 512 * 2**20


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


class Runner(NamedTuple):
    """How `fit` runs steps: `run(num_steps)` advances `LoopState.step` by up to num_steps.

    `checkpointables` are the objects besides the model, optimizer and loop
    state that a checkpoint must hold to resume this runner exactly (e.g. an
    iterator and a random generator); the array runner needs none.
    """

    run: Callable[[int], None]
    checkpointables: dict


def checked_step(
    model: VAE,
    optimizer: snt.Optimizer,
    settings: TrainConfig,
    state: LoopState,
    images: tf.Tensor,
    seed: tf.Tensor,
    check_finite: bool = True,
) -> tf.Tensor:
    """One step at global step `state.step`, inside a compiled loop; returns True when the loop must stop.

    The terms and gradients are checked to be finite. With
    train.on_nonfinite "stop" (the default) a non-finite step is recorded in
    `state.bad_step` / `state.bad_term` and not counted, and the loop must
    stop: `fit` then raises without writing a checkpoint or calling a hook,
    so the update, which is applied unconditionally, never leaves the loop.
    With "skip" the update sits in a conditional and a non-finite step
    leaves the weights and the optimizer untouched (counted in
    `state.skipped`); XLA copies every weight and slot around such a
    conditional, so this mode costs ~20% a step. `check_finite=False` drops
    the check (only to measure what it costs: benchmarks/train_speed.py).
    """
    weight = objectives.kl_weight(settings, state.step)
    terms, gradients = loss_and_gradients(model, images, settings, weight, seed)
    size = tf.cast(tf.shape(images)[0], tf.float32)
    finite = objectives.finite_flags(terms, gradients) if check_finite else tf.ones([len(CHECKED_TERMS)], tf.bool)
    good = tf.reduce_all(finite)
    if settings.on_nonfinite == "skip":
        if good:
            _apply(optimizer, model, settings, state.step, gradients)
        state.skipped.assign_add(1 - tf.cast(good, tf.int64))
    else:
        _apply(optimizer, model, settings, state.step, gradients)
        first_bad = tf.cast(tf.argmin(tf.cast(finite, tf.int32)), tf.int32)
        state.bad_step.assign(tf.where(good, state.bad_step, state.step + 1))
        state.bad_term.assign(tf.where(good, state.bad_term, first_bad))
    # Selects, not a conditional: a non-finite step adds nothing (and no NaN) to the sums.
    state.sums.assign_add(tf.where(good, size * tf.stack(terms), tf.zeros([3])))
    state.count.assign_add(tf.where(good, size, 0.0))
    stop = tf.logical_and(tf.logical_not(good), settings.on_nonfinite != "skip")
    state.step.assign_add(1 - tf.cast(stop, tf.int64))
    return stop


def _apply(optimizer: snt.Optimizer, model: VAE, settings: TrainConfig, step: tf.Tensor, gradients) -> None:
    """The optimizer's update at the learning rate of `step`."""
    optimizer.learning_rate.assign(learning_rate(settings, step))
    optimizer.apply(gradients, model.trainable_variables)


def make_iterator_runner(
    model: VAE,
    optimizer: snt.Optimizer,
    settings: TrainConfig,
    state: LoopState,
    dataset: tf.data.Dataset,
    check_finite: bool = True,
) -> Runner:
    """Steps over any `tf.data` pipeline: one compiled call (no XLA: it holds an iterator) per interval.

    Each step draws its stateless seed from a `tf.random.Generator`; the
    generator and the iterator are checkpointed, so a resumed run continues
    exactly where it stopped.
    """
    rng = tf.random.Generator.from_seed(settings.seed)
    iterator = iter(dataset.repeat().prefetch(2))

    @tf.function
    def run_steps(num_steps: tf.Tensor) -> None:
        for _ in tf.range(num_steps):
            seed = rng.uniform_full_int([2], tf.int32)
            if checked_step(model, optimizer, settings, state, next(iterator), seed, check_finite):
                break

    return Runner(lambda num_steps: run_steps(tf.constant(num_steps, tf.int64)), {"rng": rng, "iterator": iterator})


def make_array_runner(
    model: VAE,
    optimizer: snt.Optimizer,
    settings: TrainConfig,
    state: LoopState,
    source: data_lib.ArraySource,
    check_finite: bool = True,
) -> Runner:
    """Steps over in-memory images with no `tf.data` in the loop, XLA-compiled with train.jit_compile.

    Pass e visits the images in the order `source.indices(pass_seed(source.seed,
    e), ...)`, computed once per pass; batch k of it is preprocessed
    (binarized) as the `from_arrays` dataset does with that pass seed (the
    same distribution; under XLA not the same draws, since XLA's stateless
    random numbers come from another algorithm than TensorFlow's kernels),
    and the draws of z at step s use the stateless seed (train.seed, s). So
    everything a step sees is a function of `state.step`: a checkpoint of the
    weights, the optimizer and `state` resumes exactly, and how the steps are
    split into calls does not change the result. Calls must not cross a pass
    boundary (`fit` stops at every epoch end). The full batches of a pass run
    in one compiled function whose shapes do not depend on the call, so XLA
    compiles it once; a smaller last batch runs as a TensorFlow graph (so its
    draws are TensorFlow's kernels', whatever train.jit_compile says).
    """
    batch_size, examples = source.batch_size, source.num_examples
    full_batches, steps_per_pass = examples // batch_size, source.num_batches
    cached_order: list = [None, None, None]  # (epoch, order, seed) of the pass in progress

    @tf.function
    def pass_order(epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seed = pass_seed(source.seed, epoch)
        return source.indices(seed, 0, examples), seed

    def step_on(index: tf.Tensor, seed: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        images = source.preprocess(tf.gather(source.pixels, index), seed, k)
        step_seed = tf.cast(tf.stack([tf.constant(settings.seed, tf.int64), state.step]), tf.int32)
        return checked_step(model, optimizer, settings, state, images, step_seed, check_finite)

    # XLA compiles a function anew for every value of an input it must know at
    # compile time: the begin of a `tf.slice` and the bounds of a `tf.range`
    # are such inputs, and with them every call recompiled (~2 s). So the
    # batch's indices are gathered from [batches, batch_size], and the loop
    # runs while `state.step < stop_at`, a variable: one compilation in all.
    stop_at = tf.Variable(0, dtype=tf.int64, trainable=False, name="stop_at")

    @tf.function(jit_compile=settings.jit_compile)
    def run_full(order: tf.Tensor, seed: tf.Tensor) -> None:
        batches = tf.reshape(order[: full_batches * batch_size], [full_batches, batch_size])
        while state.step < stop_at:
            k = state.step % steps_per_pass
            if step_on(tf.gather(batches, k), seed, k):
                break

    # One step a pass: as a TensorFlow graph, not an XLA program of its own (~2 s to compile).
    @tf.function(jit_compile=False)
    def run_last(order: tf.Tensor, seed: tf.Tensor) -> None:
        step_on(order[full_batches * batch_size :], seed, tf.constant(full_batches, tf.int64))

    def run(num_steps: int) -> None:
        step = int(state.step.numpy())
        epoch, first = divmod(step, steps_per_pass)
        if first + num_steps > steps_per_pass:
            raise ValueError(f"{num_steps} steps from step {step} would cross the end of pass {epoch}")
        if cached_order[0] != epoch:
            cached_order[:] = [epoch, *pass_order(tf.constant(epoch, tf.int64))]
        _, order, seed = cached_order
        full_steps = min(first + num_steps, full_batches) - first
        if full_steps > 0:
            stop_at.assign(step + full_steps)
            run_full(order, seed)
        if full_steps < num_steps and int(state.bad_step.numpy()) < 0:
            run_last(order, seed)

    return Runner(run, {})


def pass_seed(seed: int, epoch) -> tf.Tensor:
    """The seed of pass `epoch` over in-memory training data (an int64 scalar), stateless in (seed, epoch)."""
    pair = tf.cast(tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)]), tf.int32)
    return tf.random.stateless_uniform([], pair, minval=None, maxval=None, dtype=tf.int64)


def make_runner(model, optimizer, settings: TrainConfig, state: LoopState, dataset: tf.data.Dataset) -> Runner:
    """The array runner for in-memory data (every `from_arrays` dataset, so every named one), else the iterator runner."""
    source = data_lib.array_source(dataset)
    if source is not None:
        return make_array_runner(model, optimizer, settings, state, source)
    return make_iterator_runner(model, optimizer, settings, state, dataset)


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
    strategy = distribute.build_strategy(experiment.train.distribute)  # first: see distribute.build_strategy
    # Only the chief of a multi-worker run writes run_dir; the other workers write a scratch copy.
    with distribute.worker_run_dir(strategy, run_dir) as run_dir, rundir.lock(run_dir), \
            devices.placement(experiment.train.device):
        run_dir = rundir.prepare(run_dir, experiment)
        rundir.remove_stale_temporaries(run_dir)
        return _fit_locked(experiment, run_dir, train_data, test_data, hooks, progress, strategy)


def _fit_locked(experiment, run_dir, train_data, test_data, hooks, progress, strategy) -> FitResult:
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
    test_pass = _test_pass(test_data, settings)

    state = LoopState()
    if settings.distribute == "default":
        model = model_lib.build(experiment.model, image_shape)
        model(tf.zeros([1, *image_shape]))  # create the weights now, from the data's shape
        optimizer = build_optimizer(model, settings.learning_rate, settings.optimizer, settings.momentum)
        runner = make_runner(model, optimizer, settings, state, train_data)
    else:  # the same steps, on the replicas of tfvae.distribute
        model, optimizer = distribute.build_replicated(
            strategy, experiment.model, image_shape,
            lambda vae: build_optimizer(vae, settings.learning_rate, settings.optimizer, settings.momentum),
        )
        batches_from = lambda step: distribute.global_batches(train_data, step, pass_seed)  # noqa: E731
        runner = distribute.DistributedRunner(strategy, model, optimizer, settings, state, batches_from, learning_rate)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state, **runner.checkpointables)
    restored = rundir.restore_latest(checkpoint, rundir.checkpoint_dir(run_dir))  # the last good checkpoint
    manager = tf.train.CheckpointManager(checkpoint, rundir.checkpoint_dir(run_dir), settings.max_checkpoints)

    history = read_history(run_dir)
    rows = history[history["step"] <= int(state.step.numpy())].to_dict("records")
    wall_offset = float(rows[-1]["wall_time"]) if rows else 0.0
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
        runner.run(target - step)
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
                test_terms = test_pass(model)
                row.update({f"test_{name}": float(value) for name, value in test_terms._asdict().items()})
            rows.append(row)
            bar.set_postfix(_bar_numbers(rows))
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


def _test_pass(test_data: tf.data.Dataset, settings: TrainConfig) -> Callable[[VAE], objectives.Terms]:
    """The end-of-epoch test ELBO: model -> mean terms over the test set (draws seeded by train.seed).

    When every pass of the test data yields the same images (in-memory data,
    not shuffled, not dynamically binarized) and they fit in
    `_MAX_HELD_TEST_BYTES`, they are read once and kept as one tensor: the
    same numbers in about half the time of a pass through the pipeline.
    """
    source = data_lib.array_source(test_data)
    held = source is not None and source.binarize != "dynamic" and not source.shuffle
    if held and source.num_examples * math.prod(source.pixels.shape[1:]) * 4 <= _MAX_HELD_TEST_BYTES:
        images = tf.concat(list(test_data), axis=0)
        return lambda model: objectives.average_over_images(
            model, images, source.batch_size, settings.beta, seed=settings.seed
        )
    return lambda model: objectives.average_over_dataset(model, test_data, settings.beta, seed=settings.seed)


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


def _bar_numbers(rows: list[dict]) -> dict:
    """The progress bar's epoch, training loss and latest test loss (shown once there is one)."""
    row = rows[-1]
    numbers = {"epoch": f"{row['epoch']:.2f}", "loss": f"{row['train_loss']:.2f}"}
    test = next((r["test_loss"] for r in reversed(rows) if not math.isnan(r["test_loss"])), None)
    return numbers if test is None else {**numbers, "test": f"{test:.2f}"}


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
