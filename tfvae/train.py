"""`fit`: trains an experiment in a run directory, continuing from its last checkpoint.

    result = tfvae.fit(tfvae.preset("mnist-bernoulli-20d"), "runs/vae")

`fit` prepares the run directory, builds the model and optimizer (or
restores them), picks a runner (`tfvae.runners`), then loops over logging
intervals: run the steps (each `tfvae.step.train_step`), write a history row
(with the test terms at epoch ends), call the hooks, and at epoch ends (and
every `train.checkpoint_every` steps) write history.csv, then a checkpoint.

Running `fit` again on the same run directory with the same config continues
from the last checkpoint and ends with the same weights as a run that was
never interrupted (bit for bit with `train.deterministic`). history.csv is
trimmed back to the checkpoint on resume, so every logged step appears once.
A FactorVAE run (train.factor_weight > 0) also trains a discriminator with
its own optimizer (`tfvae.step.build_adversary`); both are in the checkpoint
(`adversary`, `adversary_optimizer`), so it resumes exactly too.

`time_budget` stops training by the clock instead of by epochs, with a
checkpoint, at the first history row whose `wall_time` reaches it. That is
seconds of the training loop summed over sessions: XLA compilation and each
epoch's end (the test pass, the history row, the checkpoint) included;
reading the data and building the model before the loop, and evaluations
outside `fit`, not. A run continued with a larger budget goes on from that
checkpoint; one already past its budget trains no further.

A non-finite loss or gradient stops training with `NonFiniteError`, naming
the step and the term, without writing a checkpoint or calling a hook (the
last good checkpoint is what a rerun continues from); with
`train.on_nonfinite = "skip"` the batch is skipped, leaving the weights
untouched, and counted in history.csv's `skipped` column instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sonnet as snt
import tensorflow as tf
from tqdm.auto import tqdm

from tfvae import checks, devices, distribute, evaluation, objectives, rundir, runners
from tfvae import data as data_lib
from tfvae import model as model_lib
from tfvae import protocol
from tfvae.config import Experiment
from tfvae.model import VAE
from tfvae.optimizers import build_optimizer
from tfvae.step import LoopState, NonFiniteError, build_adversary, kl_weight, learning_rate, nonfinite_error

# A hook is called after each row of history with (step, model, row).
Hook = Callable[[int, VAE, dict], None]
# The clock of `wall_time` and `time_budget` (seconds); a name of its own so a test can replace it.
_clock = time.perf_counter
# The largest test set (float32 bytes) that fit keeps in memory for its end-of-epoch test ELBO.
_MAX_HELD_TEST_BYTES = 512 * 2**20


@dataclasses.dataclass
class FitResult:
    """What `fit` leaves behind: the trained model and its history."""

    model: VAE
    history: pd.DataFrame
    run_dir: Path


def fit(
    experiment: Experiment,
    run_dir: str | os.PathLike,
    *,
    model: snt.Module | Callable[[], snt.Module] | None = None,
    train_data: data_lib.ArraySource | tf.data.Dataset | None = None,
    test_data: data_lib.ArraySource | tf.data.Dataset | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    time_budget: float | None = None,
) -> FitResult:
    """Trains `experiment` in `run_dir`, continuing from its last checkpoint if any.

    Args:
      experiment: what to train (see `tfvae.config`).
      run_dir: where config.json, history.csv and checkpoints/ go.
      model: a model you built to train instead of the one `experiment.model`
        describes: a `tfvae.VAE` of your own parts, or any `snt.Module` with
        encode, decode, prior (a property) and latent_size (`tfvae.protocol`);
        fresh, or the same model again to continue the run; or a function of
        no arguments that builds it, which fit calls under the distribution
        strategy (needed when `train.distribute` is not "default"). The run
        notes its class (model.json); reading the run back needs it again
        (`tfvae.open_run(run_dir, model=...)`).
      train_data, test_data: images to use instead of the split the config
        names: an `ArraySource` (`tfvae.data.from_arrays`, `load`,
        `from_directory`), trained on without `tf.data`, or any batched
        `tf.data.Dataset` of [b, H, W, C] in [0, 1] (or `(images, labels)`),
        trained on through an iterator. A dataset's seeds combine with TF's
        global seed: for a repeatable run, build it right after
        `tf.random.set_seed(experiment.train.seed)`, without a prefetch
        inside the part that repeats, so that a resumed run continues exactly.
      hooks: called with (step, model, row) after each history row.
      progress: show a progress bar: of steps, or with a time budget, of
        seconds of training.
      time_budget: seconds of training in all (history.csv's `wall_time`,
        summed over the sessions of a resumed run) after which to stop, at the
        first history row that reaches it, with a checkpoint; None trains for
        `train.epochs` (which still bounds a budgeted run).

    Returns:
      A `FitResult` with the model and the history DataFrame (nats per image).

    Raises:
      NonFiniteError: a step's loss or gradient was not finite (the last
        good checkpoint is kept).
      RunDirError, ValueError: an unusable run directory or dataset.
    """
    if time_budget is not None and not checks.is_positive_number(time_budget):
        raise ValueError(f"time_budget must be a number of seconds > 0 (or None), got {time_budget!r}")
    strategy = distribute.build_strategy(experiment.train.distribute)  # first: see distribute.build_strategy
    # Only the chief of a multi-worker run writes run_dir; the other workers write a scratch copy.
    with distribute.worker_run_dir(strategy, run_dir) as run_dir, rundir.lock(run_dir), \
            devices.placement(experiment.train.device):
        run_dir = rundir.prepare(run_dir, experiment)
        rundir.remove_stale_temporaries(run_dir)
        return _fit_locked(experiment, run_dir, model, train_data, test_data, hooks, progress, strategy, time_budget)


def _fit_locked(experiment, run_dir, model, train_data, test_data, hooks, progress, strategy,
                time_budget) -> FitResult:
    config = experiment.train
    model_given = model is not None
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    # TF combines every op seed (weights, and the pipelines loaded here) with
    # the global seed, so a run is repeatable only if this comes first.
    tf.random.set_seed(config.seed)
    train_data, test_data = (
        _checked_data(given if given is not None else rundir.load_split(experiment, split, with_labels=True), split)
        for given, split in ((train_data, "train"), (test_data, "test"))
    )
    image_shape = data_lib.image_shape(train_data)
    first_batch = next(iter(train_data))  # read once: checked here, and its side data builds the model's weights
    _check_images(tf.nest.flatten(first_batch)[0], "training", experiment.model.likelihood)
    model = _built_model(model, experiment, image_shape, strategy, train_data, first_batch)
    # Side data (labels, factors) travels with the images only as far as the model needs it (`tfvae.protocol`);
    # the training data's was checked when the model was built.
    _check_side_data(test_data, model, "test")
    train_data, test_data = _for_model(train_data, model), _for_model(test_data, model)
    steps_per_epoch = _steps_per_epoch(train_data)
    total_steps = config.epochs * steps_per_epoch
    test_batches, test_batch_size = _test_batches(test_data)
    average_test_terms = evaluation.terms_averager(model)  # the test pass's loop, compiled once for the run
    rundir.write_model_note(run_dir, model, built_in_python=model_given)
    optimizer = build_optimizer(model, config.learning_rate, config.optimizer, config.momentum)
    adversary = build_adversary(config, model.latent_size)  # FactorVAE's discriminator and its optimizer, or None
    if adversary is not None:
        _check_batches_of_two(train_data)
    state = LoopState()
    runner = runners.make_runner(model, optimizer, config, state, train_data, strategy, adversary=adversary)
    adversary_parts = adversary.checkpointables() if adversary is not None else {}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state, **adversary_parts,
                                     **runner.checkpointables)
    restored = rundir.restore_latest(checkpoint, rundir.checkpoint_dir(run_dir))  # the last good checkpoint
    manager = tf.train.CheckpointManager(checkpoint, rundir.checkpoint_dir(run_dir), config.max_checkpoints)

    step = int(state.step.numpy())
    history = rundir.read_history(run_dir)
    rows = history[history["step"] <= step].to_dict("records")
    wall_offset = float(rows[-1]["wall_time"]) if rows else 0.0
    bar = _progress_bar(experiment.name, step, total_steps, wall_offset, time_budget, progress)
    out_of_time = time_budget is not None and wall_offset >= time_budget
    started = _clock()
    while step < total_steps and not out_of_time:
        target = min(
            _next_multiple(step, config.log_every),
            _next_multiple(step, steps_per_epoch),
            _next_multiple(step, config.checkpoint_every or total_steps),
            total_steps,
        )
        runner.run(target - step)
        if int(state.bad_step.numpy()) >= 0:
            bar.close()
            raise nonfinite_error(state, restored)
        wall_time = wall_offset + _clock() - started
        out_of_time = time_budget is not None and wall_time >= time_budget
        bar.update(target - step if time_budget is None else
                   (bar.total if out_of_time else int(wall_time)) - bar.n)
        step = target
        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if step % config.log_every == 0 or end_of_epoch or out_of_time:
            row = _history_row(step, steps_per_epoch, state, wall_time)
            # The KL weight and learning rate of the row's last step.
            row.update(beta=float(kl_weight(config, step - 1)), learning_rate=float(learning_rate(config, step - 1)))
            if end_of_epoch and (step // steps_per_epoch % config.test_every == 0 or step == total_steps
                                 or out_of_time):
                row.update(_named("test", average_test_terms(test_batches, config.beta, config.seed, test_batch_size)))
            rows.append(row)
            bar.set_postfix(_bar_numbers(rows))
            for hook in hooks:
                hook(step, model, row)
        if end_of_epoch or out_of_time or (config.checkpoint_every and step % config.checkpoint_every == 0):
            rundir.write_history(run_dir, rows)  # before the checkpoint: see the module docstring
            restored = manager.save(checkpoint_number=step)
    bar.close()
    return FitResult(model=model, history=pd.DataFrame(rows, columns=rundir.HISTORY_COLUMNS), run_dir=run_dir)


def _built_model(model, experiment: Experiment, image_shape, strategy, train_data, first_batch) -> snt.Module:
    """`model` (or the one `experiment.model` describes, or what a function given as `model` builds) with its
    weights created from the data's shape (and its first batch's side data, which is checked for what the model
    needs first), under the strategy's scope (a default strategy changes nothing)."""
    given_model = model
    with strategy.scope():  # mirrored weights under a strategy
        if given_model is None:
            model = model_lib.build(experiment.model, image_shape)
        elif inspect.isclass(given_model) or (callable(given_model) and not isinstance(given_model, snt.Module)):
            model = given_model()  # a function that builds the model
        if given_model is not None:
            protocol.check_model(model, "fit(model=...)", trainable=True)
        if isinstance(given_model, snt.Module) and experiment.train.distribute != "default":
            raise ValueError(f"train.distribute is {experiment.train.distribute!r}: a model built before fit cannot "
                             "be mirrored after the fact; give the function that builds it, fit(model=MyModel) or "
                             "fit(model=lambda: MyModel(...)), and fit builds it under the strategy")
        _check_side_data(train_data, model, "train")
        model_lib.create_variables(model, image_shape, protocol.split_batch_side(first_batch)[1])
    return model


def _named(split: str, terms: objectives.Terms) -> dict:
    """History columns of a split's terms, nats per image: `{split}_loss`, `{split}_distortion`, `{split}_rate`."""
    return {f"{split}_{term}": float(value) for term, value in zip(("loss", "distortion", "rate"), terms)}


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


def _test_batches(test_data) -> tuple:
    """The test set as the end-of-epoch test pass reads it: (batches, batch size, or None for a dataset).

    When every pass of the test data yields the same images (an `ArraySource`
    neither shuffled nor dynamically binarized) and they fit in
    `_MAX_HELD_TEST_BYTES`, they are read once and kept as one tensor: the
    same numbers in less time than a pass through the pipeline.
    """
    fixed = isinstance(test_data, data_lib.ArraySource) and test_data.binarize != "dynamic" and not test_data.shuffle
    if fixed and test_data.num_examples * math.prod(test_data.image_shape) * 4 <= _MAX_HELD_TEST_BYTES:
        batches = list(test_data)
        held = tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *batches)  # images, or (images, side)
        return held, test_data.batch_size
    return data_lib.as_dataset(test_data), None


def _checked_data(data, split: str):
    """`data` if it is something fit trains on: an `ArraySource` or a `tf.data.Dataset`.

    Raises:
      ValueError: anything else.
    """
    if not isinstance(data, (data_lib.ArraySource, tf.data.Dataset)):
        raise ValueError(f"{split}ing data must be a tfvae.data.ArraySource or a tf.data.Dataset; "
                         f"got {type(data).__name__}")
    return data


def _check_side_data(data, model, split: str) -> None:
    """Raises one ValueError line when `data` lacks side data `model` needs, or holds values it cannot take."""
    if not protocol.side_data_needed(model):
        return
    if isinstance(data, data_lib.ArraySource):
        side = {name: values.numpy() for name, values in data.side_data.items()}
    else:  # a tf.data pipeline: which names it carries (values unread)
        spec = data.element_spec
        has_side_data = isinstance(spec, tuple) and len(spec) > 1
        side = dict.fromkeys((tuple(spec[1]) if isinstance(spec[1], dict) else ("label",)) if has_side_data else ())
    protocol.check_side_data(model, side, f"the {split} data")


def _for_model(data, model):
    """`data` with the side data `model` needs and no other (`tfvae.protocol.side_data_needed`; checked by
    `_check_side_data`): batches of images alone for most models."""
    needed = protocol.side_data_needed(model)
    if isinstance(data, data_lib.ArraySource):
        return data.keeping_side_data(needed)
    spec = data.element_spec
    if needed or not (isinstance(spec, tuple) and len(spec) > 1):
        return data
    return data.map(lambda images, *_: images)


def _check_batches_of_two(data) -> None:
    """FactorVAE permutes codes across a batch: refuse in-memory data whose last batch would hold one image."""
    if isinstance(data, data_lib.ArraySource) and data.num_examples % data.batch_size == 1:
        raise ValueError(f"data.batch_size {data.batch_size} leaves a last batch of one image of the "
                         f"{data.num_examples} training images, and FactorVAE (train.factor_weight > 0) needs >= 2 "
                         "codes a batch: choose another data.batch_size")


def _steps_per_epoch(data) -> int:
    batches = len(data) if isinstance(data, data_lib.ArraySource) else int(data.cardinality().numpy())
    if batches <= 0:
        raise ValueError("the training dataset must be finite and non-empty (one pass is one epoch)")
    return batches


def _next_multiple(value: int, period: int) -> int:
    return (value // period + 1) * period


def _progress_bar(name: str, step: int, total_steps: int, wall_offset: float, time_budget: float | None,
                  enabled: bool) -> tqdm:
    """Steps done out of `total_steps`; with a time budget, seconds of training (wall_offset on) out of it, since
    the budget, not the epochs, is what ends such a run."""
    if time_budget is None:
        return tqdm(total=total_steps, initial=step, disable=not enabled, unit="step", desc=name)
    return tqdm(total=math.ceil(time_budget), initial=int(min(wall_offset, time_budget)), disable=not enabled,
                unit="s", desc=f"{name}, seconds of training")


def _bar_numbers(rows: list[dict]) -> dict:
    """The progress bar's epoch, training loss and latest test loss (shown once there is one)."""
    row = rows[-1]
    numbers = {"epoch": f"{row['epoch']:.2f}", "loss": f"{row['train_loss']:.2f}"}
    test = next((r["test_loss"] for r in reversed(rows) if not math.isnan(r["test_loss"])), None)
    return numbers if test is None else {**numbers, "test": f"{test:.2f}"}


def _history_row(step: int, steps_per_epoch: int, state: LoopState, wall_time: float) -> dict:
    row = {column: math.nan for column in rundir.HISTORY_COLUMNS}
    row.update(step=step, epoch=round(step / steps_per_epoch, 4), skipped=int(state.skipped.numpy()),
               wall_time=round(wall_time, 3), **_named("train", state.take_interval_means()))
    return row


__all__ = ["FitResult", "Hook", "NonFiniteError", "fit"]
