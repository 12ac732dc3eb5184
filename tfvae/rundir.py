"""The run directory: the one place a run's settings, history and checkpoints live.

    RUN_DIR/config.json      the Experiment (written atomically)
    RUN_DIR/history.csv      one row per logged step (written atomically)
    RUN_DIR/checkpoints/     TensorFlow checkpoints (see tfvae.train)
    RUN_DIR/metrics.json     the final numbers
    RUN_DIR/figures/         PNGs and GIFs
    RUN_DIR/tensorboard/     TensorBoard event files, train/ and test/ (see tfvae.tensorboard)

Only data formats, nothing that runs code when read. Everything downstream
(plots, evaluation, reports) starts from a run directory.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data as data_lib
from tfvae import factors
from tfvae import model as model_lib
from tfvae import protocol
from tfvae.config import Experiment
from tfvae.model import VAE

# Earlier history.csv files called the distortion "reconstruction" and the rate "kl"; such runs read the same.
OLD_HISTORY_NAMES = {f"{split}_{old}": f"{split}_{new}" for split in ("train", "test")
                     for old, new in (("reconstruction", "distortion"), ("kl", "rate"))}
HISTORY_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "train_distortion",
    "train_rate",
    "test_loss",
    "test_distortion",
    "test_rate",
    "beta",
    "learning_rate",
    "skipped",
    "wall_time",
)


# A run may be continued for more epochs, with its data moved elsewhere, or on
# other devices or threads (tfvae.distribute keeps one checkpoint layout for any replica count),
# or in another precision (the weights are float32 in every precision).
_MAY_CHANGE_ON_RESUME = (
    "train.epochs", "data.data_dir", "train.device", "train.distribute", "train.threads", "train.precision",
    "train.test_every",
)


class RunDirError(ValueError):
    """A run directory cannot be used for this experiment, or cannot be read."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an older one (the CLI shows it as one `tfvae: warning:` line)."""


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` so that a crash leaves the old or the new file, never a part."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def prepare(run_dir: str | os.PathLike, experiment: Experiment) -> Path:
    """Creates `run_dir` with `config.json`, or checks the one already there.

    A run may be extended to more epochs; any other difference is refused
    with the list of differing fields.
    """
    run_dir = _make_dir(run_dir)
    if (run_dir / "config.json").exists():
        changed = config_lib.differences(load_experiment(run_dir), experiment)
        for field in _MAY_CHANGE_ON_RESUME:
            changed.pop(field, None)
        if changed:
            listed = "; ".join(f"{key}: {old!r} in the run, {new!r} now" for key, (old, new) in changed.items())
            raise RunDirError(
                f"run directory {run_dir} holds a different experiment ({listed}). "
                "Use another run directory, or the same settings to continue it."
            )
    write_atomically(run_dir / "config.json", json.dumps(experiment.to_dict(), indent=2) + "\n")
    return run_dir


def run_dir_for(experiment: Experiment, root: str | os.PathLike = "runs") -> Path:
    """`root`/NAME-HASH: a run directory of its own for each experiment's settings.

    HASH is 8 hex digits of every setting except those a continued run may change (`train.epochs`, the data
    folder, the device, ...), so running a notebook again with a changed parameter starts a new run beside the
    earlier one, and the same settings (more epochs too) continue it. Nothing is created.
    """
    settings = {key: value for key, value in config_lib.flat_fields(experiment).items()
                if key not in _MAY_CHANGE_ON_RESUME}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path(root) / f"{experiment.name}-{digest}"


def _make_dir(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(run_dir, os.W_OK):
            raise PermissionError
    except PermissionError as error:
        raise RunDirError(f"run directory {run_dir} is not writable") from error
    except OSError as error:  # a parent that is a file, a read-only or virtual file system, ...
        raise RunDirError(f"cannot create run directory {run_dir}: {error.strerror or error}") from error
    return run_dir


def load_experiment(run_dir: str | os.PathLike) -> Experiment:
    """The experiment saved in RUN_DIR/config.json."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory: it has no config.json")
    try:
        return Experiment.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"{path} is not a tfvae config: {error}") from error


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's history.csv as a DataFrame (empty, with the columns, if there is none)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    try:
        # pandas before 3 parses floats with a parser that can miss the written double by one bit (then a resumed
        # run's history is not bit for bit the uninterrupted run's); "round_trip" reads them exactly. pandas 3 reads
        # them exactly by default and deprecates the argument.
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        history = pd.read_csv(path, **exact)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} cannot be read as CSV: {error}") from error
    if "step" not in history.columns:
        raise RunDirError(f"{path} has no 'step' column; it is not a tfvae history")
    return history.rename(columns=OLD_HISTORY_NAMES)


def write_history(run_dir: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Writes history.csv atomically from a list of row dicts."""
    write_atomically(Path(run_dir) / "history.csv", pd.DataFrame(list(rows), columns=HISTORY_COLUMNS).to_csv(index=False))


def load_split(experiment: Experiment, split: str, with_labels: bool = False) -> data_lib.ArraySource:
    """One split of the experiment's dataset, in memory: shuffled for "train", in order otherwise.

    "train" and "test" are those of `DataConfig.split` (with `data.validation`, the two parts of the training
    split); any other name is read as TFDS names it.
    """
    data = experiment.data
    training = split == "train"
    return factors.load(  # data.load, or a factor dataset's split
        data.name,
        data.split(split) if split in ("train", "test") else split,
        batch_size=data.batch_size,
        binarize=data.binarize,
        seed=experiment.train.seed,
        data_dir=data.data_dir,
        shuffle=training,
        with_labels=with_labels,
    )


def first_test_images(experiment: Experiment, count: int, with_labels: bool = False):
    """The first `count` test images of the experiment's data, binarized as in training: [count, H, W, C]
    (and their labels [count] with `with_labels`)."""
    data = experiment.data
    test = factors.load(data.name, data.split("test"), batch_size=count, binarize=data.binarize,
                         seed=experiment.train.seed, data_dir=data.data_dir, with_labels=with_labels)
    first = next(iter(test))
    return tuple(part.numpy() for part in first) if with_labels else first.numpy()


class Run:
    """A run directory opened for reading: what a notebook, a figure or an experiment needs of it.

    `experiment` (config.json) and `dir` at once; `history` (history.csv),
    `test_images` and `test_labels` (the whole test split in order, float32
    [n, H, W, C] binarized as in training, and int64 [n]) and `model` (the
    latest readable checkpoint) on first use. Nothing is trained or written.
    """

    def __init__(self, run_dir: str | os.PathLike, model=None):
        self.dir = Path(run_dir)
        self.experiment = load_experiment(self.dir)
        self._built_model = model

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        return read_history(self.dir)

    @functools.cached_property
    def _test(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.experiment.data
        split = factors.load(data.name, data.split("test"), batch_size=1000, binarize=data.binarize,
                              seed=self.experiment.train.seed, data_dir=data.data_dir, with_labels=True)
        images, labels = zip(*((x.numpy(), y.numpy()) for x, y in split))
        return np.concatenate(images), np.concatenate(labels)

    @property
    def test_images(self) -> np.ndarray:
        return self._test[0]

    @property
    def test_labels(self) -> np.ndarray:
        return self._test[1]

    @functools.cached_property
    def model(self) -> VAE:
        if self._built_model is not None or read_model_note(self.dir).get("class"):  # its shapes are its own
            return restore_model(self.dir, model=self._built_model)
        return restore_model(self.dir, image_shape=self.test_images.shape[1:])


def open_run(run_dir: str | os.PathLike, model=None) -> Run:
    """The run directory `run_dir`, for reading (see `Run`); a RunDirError if it holds no config.json.

    `model`: for a run trained on a model built in Python, that model built
    again (untrained); the run's weights are restored into it.
    """
    return Run(run_dir, model)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Deletes what a killed write left behind: `*.tmp` files and TF's `ckpt-N_temp` folders."""
    run_dir = Path(run_dir)
    for leftover in [*run_dir.glob("*.tmp"), *checkpoint_dir(run_dir).glob("*_temp*")]:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def lock(run_dir: str | os.PathLike):
    """Holds an exclusive lock on the run directory until the returned file is closed.

    Two processes training into one run directory would overwrite each
    other's checkpoints; the second gets a RunDirError instead. The lock goes
    with the process, however it ends.
    """
    run_dir = _make_dir(run_dir)
    handle = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise RunDirError(f"run directory {run_dir} is in use by another process") from error
    return handle


def restore_model(run_dir: str | os.PathLike, image_shape: Sequence[int] | None = None, model=None) -> VAE:
    """The model of a run directory at its latest readable checkpoint.

    `image_shape` (H, W, C) defaults to the decoder's `output_shape` or the
    shape of the run's test images. A run trained on a model built in Python
    (`fit(..., model=...)`) needs that model again, `model`, freshly built:
    its weights are restored into it. Otherwise the model is built from
    config.json.
    """
    experiment = load_experiment(run_dir)
    if model is not None:
        protocol.check_model(model, "open_run(run_dir, model=...)")
    built_in_python = read_model_note(run_dir).get("class")
    if model is None and built_in_python:
        raise RunDirError(f"{run_dir} trained a model built in Python ({built_in_python}); build it again and "
                          "pass it: tfvae.open_run(run_dir, model=...) or restore_model(run_dir, model=...)")
    if image_shape is None and model is not None:
        image_shape = protocol.image_shape(model)
    if image_shape is None:
        image_shape = data_lib.image_shape(load_split(experiment, "test"))
    if model is None:
        model = model_lib.build(experiment.model, image_shape)
    model_lib.create_variables(model, image_shape)
    if restore_latest(tf.train.Checkpoint(model=model), checkpoint_dir(run_dir), partial=True) is None:
        raise RunDirError(f"{run_dir} has no checkpoint yet: train it first (tfvae train ... --run-dir {run_dir})")
    return model


create_variables = model_lib.create_variables  # (it lives in tfvae.model; kept here for old callers)


def write_model_note(run_dir: str | os.PathLike, model, built_in_python: bool) -> None:
    """RUN_DIR/model.json: whether the model comes from config.json or was built in Python (and its class)."""
    kind = type(model)
    note = {"class": f"{kind.__module__}.{kind.__qualname__}"} if built_in_python else {"built_from": "config.json"}
    previous = read_model_note(run_dir)
    if previous and previous != note:
        where = lambda n: n.get("class") or "the model config.json describes"  # noqa: E731
        raise RunDirError(f"{run_dir} trained {where(previous)}; continuing it with {where(note)} would mix two "
                          "models: pass the same model again, or use another run directory")
    write_atomically(Path(run_dir) / "model.json", json.dumps(note) + "\n")


def read_model_note(run_dir: str | os.PathLike) -> dict:
    """RUN_DIR/model.json as a dict ({} for runs written before it existed: models built from config.json)."""
    path = Path(run_dir) / "model.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def restore_latest(checkpoint: tf.train.Checkpoint, directory: Path, partial: bool = False) -> str | None:
    """Restores the newest checkpoint in `directory` that reads back whole; returns its path.

    A checkpoint that fails to read (a kill mid-write, a damaged file) is
    skipped for the one before it, with a `CheckpointWarning` naming both.
    Returns None when there is none at all; raises RunDirError when there are
    some and none reads.
    """
    state = _checkpoint_state(directory)
    paths = list(state.all_model_checkpoint_paths) if state else []
    if state and state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    failures = []
    for path in reversed(paths):
        # The files are in `directory` whatever path the index recorded: the run
        # may have been moved, or recorded relative to another working directory.
        path = str(directory / Path(path).name)
        try:
            status = checkpoint.read(path)
            status.expect_partial() if partial else status.assert_existing_objects_matched()
            if failures:
                warnings.warn(_skipped_message(directory, failures, Path(path).name), CheckpointWarning, stacklevel=2)
            return path
        except Exception as error:  # any failure to read (TF, protobuf, short reads) means: try the one before
            failures.append(f"{Path(path).name}: {str(error).splitlines()[0][:200]}")
    if failures:
        raise RunDirError(f"no checkpoint in {directory} could be read ({'; '.join(failures)})")
    return None


def _skipped_message(directory: Path, failures: list[str], used: str) -> str:
    """One line: which checkpoints were damaged, why, and the one (and step) used instead."""
    names = [failure.split(":", 1)[0] for failure in failures]
    reasons = "; ".join(failure.split(": ", 1)[1] for failure in failures)
    which = f"checkpoint {names[0]} in {directory} is" if len(names) == 1 else \
        f"checkpoints {', '.join(names)} in {directory} are"
    number = used.rsplit("-", 1)[-1]
    step = f" (step {number})" if number.isdigit() else ""  # fit numbers its checkpoints by step
    return f"{which} damaged and skipped ({reasons}); continuing from {used}{step}"


def _checkpoint_state(directory: Path):
    if not (directory / "checkpoint").exists():
        return None
    try:
        return tf.train.get_checkpoint_state(str(directory))
    except Exception as error:  # a damaged index file: TF raises protobuf parse errors
        raise RunDirError(f"{directory / 'checkpoint'} is damaged: {error}") from error


def run_summary(history: pd.DataFrame) -> dict:
    """The last evaluated row of a history, plus timing: a JSON-ready dict.

    Losses are nats per image. `wall_time` is the seconds of training in all
    (summed over the sessions of a resumed run, start-ups included);
    `seconds_per_epoch` is the steady-state time of an epoch's training steps
    (see `steady_seconds_per_epoch`).
    """
    evaluated = history.dropna(subset=["test_loss"])
    if evaluated.empty:
        raise ValueError("the history has no evaluated epoch yet")
    last = evaluated.iloc[-1]
    summary = {column: float(last[column]) for column in HISTORY_COLUMNS if column in last and column != "step"}
    summary["step"] = int(last["step"])
    summary["epochs"] = float(last["epoch"])
    summary["seconds_per_epoch"] = steady_seconds_per_epoch(history)
    return summary


def steady_seconds_per_epoch(history: pd.DataFrame) -> float:
    """Seconds the training steps of one epoch take at the run's steady pace.

    Every session (the first run, each resume) starts by compiling, and each
    epoch's first logging interval also holds the previous epoch's test pass
    and checkpoint; total wall time over epochs would count them in full (a
    run resumed every epoch or two would look several times slower than its
    epochs are). So the pace is seconds per step over the other intervals
    (any over 5x the median, a session started mid-epoch, left out); with one
    interval an epoch (log_every >= steps per epoch), the median epoch.
    """
    rows = history.dropna(subset=["wall_time"]).sort_values("step")
    step, wall = rows["step"].to_numpy(float), rows["wall_time"].to_numpy(float)
    epoch = rows["epoch"].to_numpy(float)
    steps, seconds = np.diff(step, prepend=0.0), np.diff(wall, prepend=0.0)
    ends = (epoch > 0) & np.isclose(epoch, np.round(epoch))  # rows at an epoch's end, tested or not (test_every)
    steps_per_epoch = step[-1] / epoch[-1]
    inside = ~np.concatenate([[True], ends[:-1]]) & (steps > 0)  # not the first interval of an epoch
    if not inside.any():
        ends &= steps > 0
        return float(np.median(seconds[ends] / steps[ends]) * steps_per_epoch)
    pace = seconds[inside] / steps[inside]
    steady = pace <= 5 * np.median(pace)
    return float(steps_per_epoch * seconds[inside][steady].sum() / steps[inside][steady].sum())
