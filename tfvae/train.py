"""Training: a `tf.GradientTape` step, and `fit`, which owns a run directory.

A run directory holds `config.json`, `history.csv` (one row per logged step)
and `checkpoints/`. Running `fit` again on the same directory with the same
config continues from the last checkpoint: the weights, the optimizer's
slots, the step counter, the random generator and the position of the input
pipeline are all checkpointed, once per epoch.

The steady state keeps Python out of the inner loop: one compiled call runs
every step up to the next logging point and returns the summed loss terms,
so the loss is read back once per logging interval, not once per step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import sonnet as snt
import tensorflow as tf
from tqdm.auto import tqdm

from tfvae import config as config_lib
from tfvae import data as data_lib
from tfvae import model as model_lib
from tfvae import objectives
from tfvae.config import ConfigError, Experiment
from tfvae.model import VAE

HISTORY_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "train_reconstruction",
    "train_kl",
    "test_loss",
    "test_reconstruction",
    "test_kl",
    "beta",
    "wall_time",
)
# A hook is called after each row of history with (step, model, row).
Hook = Callable[[int, VAE, dict], None]


class RunDirError(ValueError):
    """A run directory cannot be used for this experiment."""


@dataclasses.dataclass
class FitResult:
    """What `fit` leaves behind: the trained model and its history."""

    model: VAE
    history: pd.DataFrame
    run_dir: Path


def train_step(model: VAE, optimizer: snt.Optimizer, images: tf.Tensor, beta: float, seed: tf.Tensor) -> objectives.Terms:
    """One gradient step on the batch-mean negative ELBO; returns the batch-mean terms."""
    with tf.GradientTape() as tape:
        terms = objectives.batch_mean(objectives.negative_elbo(model, images, beta, seed=seed))
    variables = model.trainable_variables
    optimizer.apply(tape.gradient(terms.loss, variables), variables)
    return terms


def make_train_loop(model: VAE, optimizer: snt.Optimizer, beta: float, rng: tf.random.Generator):
    """A compiled function (iterator, num_steps) -> (sum of terms weighted by batch size [3], examples).

    Runs `num_steps` steps in one call; each step draws its own stateless seed
    from `rng`, whose state is checkpointed with the run.
    """

    @tf.function
    def run_steps(iterator: Iterator, num_steps: tf.Tensor):
        sums = tf.zeros([3])
        count = tf.constant(0.0)
        for _ in tf.range(num_steps):
            images = next(iterator)
            terms = train_step(model, optimizer, images, beta, rng.uniform_full_int([2], tf.int32))
            size = tf.cast(tf.shape(images)[0], tf.float32)
            sums += size * tf.stack(terms)
            count += size
        return sums, count

    return run_steps


def build_optimizer(model: VAE, learning_rate: float) -> snt.optimizers.Adam:
    """Adam with its slots created now, so the traced step creates no variables.

    Sonnet optimizers make their slots on the first `apply`; that must not
    happen inside `tf.function` loops. A zero update leaves the weights as
    they are (Adam's step is 0 / (0 + eps)), and the step counter is reset.
    """
    optimizer = snt.optimizers.Adam(learning_rate)
    variables = model.trainable_variables
    optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    optimizer.step.assign(0)
    return optimizer


def prepare_run_dir(run_dir: str | os.PathLike, experiment: Experiment) -> Path:
    """Creates `run_dir` with `config.json`, or checks the one already there.

    A run may be extended to more epochs; any other difference is refused
    with the list of differing fields.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = load_experiment(run_dir)
        changed = config_lib.differences(saved, experiment)
        changed.pop("train.epochs", None)
        if changed:
            listed = "; ".join(f"{key}: {old!r} in the run, {new!r} now" for key, (old, new) in changed.items())
            raise RunDirError(
                f"run directory {run_dir} holds a different experiment ({listed}). "
                "Use another run directory, or the same settings to continue it."
            )
    write_atomically(config_path, json.dumps(experiment.to_dict(), indent=2) + "\n")
    return run_dir


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` so that a crash leaves the old or the new file, never a part."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's history.csv as a DataFrame (empty, with the columns, if there is none)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    return pd.read_csv(path)


def load_datasets(experiment: Experiment) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The shuffled training split and the ordered test split that `experiment` names."""
    data = experiment.data
    common = dict(batch_size=data.batch_size, binarize=data.binarize, seed=experiment.train.seed, data_dir=data.data_dir)
    # No prefetch inside the training pipeline: fit prefetches after repeat(),
    # the arrangement whose iterator checkpoints restore exactly.
    train = data_lib.load(data.name, "train", shuffle=True, prefetch=False, **common)
    test = data_lib.load(data.name, "test", shuffle=False, **common)
    return train, test


def load_experiment(run_dir: str | os.PathLike) -> Experiment:
    """The experiment saved in RUN_DIR/config.json."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory: it has no config.json")
    try:
        return Experiment.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"{path} is not a tfvae config: {error}") from error


def restore_model(run_dir: str | os.PathLike, image_shape: Sequence[int] | None = None) -> VAE:
    """The model of a run directory at its latest checkpoint.

    `image_shape` defaults to the shape of the run's dataset's test images.
    """
    run_dir = Path(run_dir)
    experiment = load_experiment(run_dir)
    if image_shape is None:
        image_shape = data_lib.image_shape(load_datasets(experiment)[1])
    model = model_lib.build(experiment.model, image_shape)
    model(tf.zeros([1, *image_shape]))
    latest = tf.train.latest_checkpoint(run_dir / "checkpoints")
    if latest is None:
        raise RunDirError(f"no checkpoint in {run_dir / 'checkpoints'}; train the run first")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model


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
        `tf.random.set_seed(experiment.train.seed)`.
      hooks: called with (step, model, row) after each history row.
      progress: show a progress bar.

    Returns:
      A `FitResult` with the model and the history DataFrame (nats per image).
    """
    run_dir = prepare_run_dir(run_dir, experiment)
    settings = experiment.train
    # First: TF combines every op seed (weights, and the pipelines loaded here)
    # with the global seed, so a run is repeatable only if this comes first.
    tf.random.set_seed(settings.seed)
    if train_data is None or test_data is None:
        loaded_train, loaded_test = load_datasets(experiment)
        train_data = train_data if train_data is not None else loaded_train
        test_data = test_data if test_data is not None else loaded_test
    train_data, test_data = _images_only(train_data), _images_only(test_data)
    steps_per_epoch = _steps_per_epoch(train_data)
    total_steps = settings.epochs * steps_per_epoch

    image_shape = data_lib.image_shape(train_data)
    model = model_lib.build(experiment.model, image_shape)
    model(tf.zeros([1, *image_shape]))  # create the weights now, from the data's shape
    optimizer = build_optimizer(model, settings.learning_rate)
    rng = tf.random.Generator.from_seed(settings.seed)
    iterator = iter(train_data.repeat().prefetch(2))
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, rng=rng, iterator=iterator, step=step)
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", max_to_keep=settings.max_checkpoints)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    history = read_history(run_dir)
    history = history[history["step"] <= int(step.numpy())]
    wall_offset = float(history["wall_time"].iloc[-1]) if len(history) else 0.0
    rows = history.to_dict("records")
    run_steps = make_train_loop(model, optimizer, settings.beta, rng)
    bar = tqdm(total=total_steps, initial=int(step.numpy()), disable=not progress, unit="step", desc=experiment.name)
    started = time.perf_counter()
    while int(step.numpy()) < total_steps:
        current = int(step.numpy())
        target = min(_next_multiple(current, settings.log_every), _next_multiple(current, steps_per_epoch), total_steps)
        sums, count = run_steps(iterator, tf.constant(target - current, tf.int64))
        step.assign(target)
        train_terms = objectives.Terms(*(sums / count).numpy().tolist())
        row = _history_row(target, steps_per_epoch, train_terms, settings.beta, wall_offset + time.perf_counter() - started)
        end_of_epoch = target % steps_per_epoch == 0 or target == total_steps
        if end_of_epoch:
            test_terms = objectives.average_over_dataset(model, test_data, settings.beta, seed=settings.seed)
            row.update({f"test_{name}": float(value) for name, value in test_terms._asdict().items()})
        rows.append(row)
        bar.update(target - current)
        bar.set_postfix(epoch=f"{row['epoch']:.2f}", loss=f"{train_terms.loss:.2f}", test=f"{row['test_loss']:.2f}")
        for hook in hooks:
            hook(target, model, row)
        if end_of_epoch:
            write_atomically(run_dir / "history.csv", pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_csv(index=False))
            manager.save(checkpoint_number=target)
    bar.close()
    return FitResult(model=model, history=pd.DataFrame(rows, columns=HISTORY_COLUMNS), run_dir=run_dir)


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


def _history_row(step: int, steps_per_epoch: int, train: objectives.Terms, beta: float, wall_time: float) -> dict:
    row = {column: math.nan for column in HISTORY_COLUMNS}
    row.update(
        step=step,
        epoch=round(step / steps_per_epoch, 4),
        beta=beta,
        wall_time=round(wall_time, 3),
        **{f"train_{name}": value for name, value in train._asdict().items()},
    )
    return row


def run_summary(history: pd.DataFrame) -> dict:
    """The last evaluated row of a history, plus timing: a JSON-ready dict.

    Losses are nats per image; `seconds_per_epoch` is wall time over epochs.
    """
    evaluated = history.dropna(subset=["test_loss"])
    if evaluated.empty:
        raise ValueError("the history has no evaluated epoch yet")
    last = evaluated.iloc[-1]
    summary = {column: float(last[column]) for column in HISTORY_COLUMNS if column not in ("step",)}
    summary["step"] = int(last["step"])
    summary["epochs"] = float(last["epoch"])
    summary["seconds_per_epoch"] = float(last["wall_time"]) / float(last["epoch"])
    return summary
