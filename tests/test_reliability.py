"""Reliability: runs survive SIGKILL and resume to the same weights; numerical faults stop cleanly."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfvae import config, data, rundir, train
from tfvae import step as step_lib

# 200 images, batch 8: 25 steps an epoch; 4 epochs; a checkpoint every 5 steps.
COMMAND = [
    "tfvae", "train", "--preset", "tiny", "--epochs", "4", "--batch-size", "8",
    "--set", "train.log_every=5", "--set", "train.checkpoint_every=5", "--set", "train.deterministic=true",
    "--set", "model.hidden_sizes=[128]", "--no-progress", "--no-figures",
]  # fmt: skip
TOTAL_STEPS = 100

# Runs `tfvae train` and, when $TFVAE_KILL is "WHERE:N", SIGKILLs its own process at that point of the
# checkpoint of step N, after noting in $TFVAE_KILL_NOTE what checkpoints/ held then:
#   shards   ckpt-N's shards are written into ckpt-N_temp/, not yet merged into ckpt-N.index / .data
#            (TensorFlow's save: SaveV2 per shard, then MergeV2Checkpoints; run eagerly, one op at a time)
#   index    ckpt-N.index and .data are in place; the `checkpoint` index file does not name ckpt-N yet
#   history  history.csv holds the rows up to step N; the checkpoint of step N is not begun
KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    import tensorflow as tf
    from tensorflow.python.checkpoint import checkpoint_management
    from tensorflow.python.ops import gen_io_ops
    from tfvae import cli

    where, step = os.environ.get("TFVAE_KILL", "none:-1").split(":")
    name = f"ckpt-{step}"

    def die_here(at, folder):
        if at != where:
            return
        note = {"where": where, "files": sorted(os.listdir(folder))}
        with open(os.environ["TFVAE_KILL_NOTE"], "w") as stream:
            json.dump(note, stream)
        os.kill(os.getpid(), signal.SIGKILL)

    def text(value):
        value = value.numpy() if hasattr(value, "numpy") else value
        return value.decode() if isinstance(value, bytes) else str(value)

    merge = gen_io_ops.merge_v2_checkpoints
    def merge_v2_checkpoints(checkpoint_prefixes, destination_prefix, *args, **kwargs):
        if os.path.basename(text(destination_prefix)) == name:
            die_here("shards", os.path.dirname(text(destination_prefix)))
        return merge(checkpoint_prefixes, destination_prefix, *args, **kwargs)
    gen_io_ops.merge_v2_checkpoints = merge_v2_checkpoints

    update_state = checkpoint_management.update_checkpoint_state_internal
    def update_checkpoint_state_internal(save_dir, model_checkpoint_path, *args, **kwargs):
        if os.path.basename(text(model_checkpoint_path)) == name:
            die_here("index", save_dir)
        return update_state(save_dir, model_checkpoint_path, *args, **kwargs)
    checkpoint_management.update_checkpoint_state_internal = update_checkpoint_state_internal

    save = tf.train.CheckpointManager.save
    def save_or_die(manager, checkpoint_number=None, *args, **kwargs):
        if str(checkpoint_number) == step:
            die_here("history", manager.directory)
        return save(manager, checkpoint_number, *args, **kwargs)
    tf.train.CheckpointManager.save = save_or_die

    sys.exit(cli.main(sys.argv[1:]))
    """
)


def start(run_dir, data_dir, kill: str = "", note: Path | None = None):
    """`tfvae train` on the tiny preset in a process of its own; `kill` = "WHERE:N" (see KILLER)."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFVAE_KILL=kill or "none:-1",
                       TFVAE_KILL_NOTE=str(note or os.devnull))
    return subprocess.Popen(
        [sys.executable, "-c", KILLER, *COMMAND[1:], "--run-dir", str(run_dir), "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment,
    )  # fmt: skip


def wait_for(predicate, timeout=60.0, interval=0.01):
    # Every 10 ms: a 1 ms poll of the checkpoint index kept a core busy while the training process it waits on
    # started, on a 2-core machine shared with the other test worker; the kill comes 0 to 0.5 s later anyway.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def latest_step(run_dir: Path) -> int:
    latest = tf.train.latest_checkpoint(run_dir / "checkpoints")
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def final_weights(run_dir: Path) -> dict:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"ckpt-{TOTAL_STEPS}"))
    names = [name for name in reader.get_variable_to_shape_map() if name.startswith(("model/", "optimizer/"))]
    assert len(names) > 10
    return {name: reader.get_tensor(name) for name in names}


def killed_at(run_dir: Path, data_dir, kill: str, note: Path) -> dict:
    """Runs until the kill `kill` ("WHERE:N"); returns the note of what checkpoints/ held when it landed."""
    process = start(run_dir, data_dir, kill, note)
    assert process.wait(timeout=300) == -signal.SIGKILL, process.stderr.read().decode()[-3000:]
    return json.loads(note.read_text())


@pytest.mark.slow  # 83 s: a real process killed at five moments; make test keeps test_train's interrupted-run tests
def test_sigkill_mid_checkpoint_and_at_random_then_rerun_gives_identical_weights_and_history(mnist_data_dir,
                                                                                              tmp_path):
    reference = tmp_path / "reference"
    assert start(reference, mnist_data_dir).wait(timeout=300) == 0

    killed, note = tmp_path / "killed", tmp_path / "note.json"
    # Inside the write of ckpt-10: its shards written to ckpt-10_temp/, not merged. The run is back at ckpt-5.
    landed = killed_at(killed, mnist_data_dir, "shards:10", note)
    assert "ckpt-10_temp" in landed["files"] and "ckpt-10.index" not in landed["files"]
    assert latest_step(killed) == 5 and (killed / "checkpoints" / "ckpt-10_temp").is_dir()
    # Inside the write of ckpt-20: merged into place, not yet in the index. The run is back at ckpt-15.
    landed = killed_at(killed, mnist_data_dir, "index:20", note)
    assert "ckpt-20.index" in landed["files"] and not any("_temp" in name for name in landed["files"])
    assert latest_step(killed) == 15
    # Between history.csv (rows to step 30) and ckpt-30: the rerun trims the history back to its checkpoint.
    landed = killed_at(killed, mnist_data_dir, "history:30", note)
    assert pd.read_csv(killed / "history.csv")["step"].max() == 30 and latest_step(killed) == 25
    # At a random moment, once the process has written a checkpoint of its own.
    before, process = latest_step(killed), start(killed, mnist_data_dir)
    wait_for(lambda: latest_step(killed) > before or process.poll() is not None, timeout=120)
    time.sleep(random.Random(7).uniform(0.0, 0.5))
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert latest_step(killed) < TOTAL_STEPS
    finish = start(killed, mnist_data_dir)
    assert finish.wait(timeout=300) == 0, finish.stderr.read().decode()

    expected, resumed = final_weights(reference), final_weights(killed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        np.testing.assert_array_equal(expected[name], resumed[name], err_msg=name)
    history, reference_history = pd.read_csv(killed / "history.csv"), pd.read_csv(reference / "history.csv")
    assert history["step"].is_unique and history["step"].tolist() == reference_history["step"].tolist()
    numbers = [column for column in history.columns if column != "wall_time"]
    pd.testing.assert_frame_equal(history[numbers], reference_history[numbers])


def test_what_a_killed_write_leaves_behind_is_removed_and_nothing_else(tmp_path):
    folder = tmp_path / "checkpoints" / "ckpt-7_temp"
    folder.mkdir(parents=True)
    (folder / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    (tmp_path / "history.csv.tmp").write_text("step\n1\n")
    kept = [tmp_path / "history.csv", tmp_path / "checkpoints" / "checkpoint", tmp_path / "checkpoints" / "ckpt-5.index"]
    for path in kept:
        path.write_text("kept")
    rundir.remove_stale_temporaries(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "checkpoints", "checkpoints/checkpoint", "checkpoints/ckpt-5.index", "history.csv"]


@pytest.mark.slow  # 11 s: a second process trains into the same run directory
def test_a_run_directory_in_use_by_another_process_is_refused(mnist_data_dir, tmp_path, capsys):
    from tfvae import cli

    run_dir = tmp_path / "run"
    holder = subprocess.Popen(  # another process holding the run directory, as a training fit does
        [sys.executable, "-c", "import sys, time; from tfvae import rundir; held = rundir.lock(sys.argv[1]); "
         "print('held', flush=True); time.sleep(600)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        experiment = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir})
        with pytest.raises(rundir.RunDirError, match=f"run directory {run_dir} is in use by another process"):
            train.fit(experiment, run_dir, progress=False)
        status = cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(run_dir),
                           "--no-progress", "--no-figures"])  # fmt: skip
        lines = capsys.readouterr().err.strip().splitlines()  # (TFDS may first show its preparation progress)
        assert status == 2 and lines[-1] == f"tfvae: error: run directory {run_dir} is in use by another process"
        assert sorted(path.name for path in run_dir.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)  # the lock goes with its process, however that ends
        holder.wait(timeout=60)
    assert train.fit(experiment, run_dir, progress=False).history["step"].iloc[-1] == 7  # 200 images, batch 32


IMAGE_SHAPE = (4, 4, 1)


def images_with_nan_batch(n=64, bad_batch=2, batch_size=8) -> np.ndarray:
    images = (np.random.default_rng(0).random((n, *IMAGE_SHAPE)) < 0.5).astype(np.float32)
    images[bad_batch * batch_size] = np.nan
    return images


def small_experiment(**changes):
    base = config.override(
        config.preset("tiny"),
        {"data.batch_size": 8, "model.hidden_sizes": [8], "train.epochs": 2, "train.log_every": 4,
         "train.checkpoint_every": 2, "train.deterministic": True},
    )  # fmt: skip
    return config.override(base, changes)


def unchecked_dataset(images, batch_size=8):
    """A dataset that, unlike tfvae.data.from_arrays, lets NaN pixels through."""
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size)


def test_nan_batch_stops_training_naming_step_and_term_and_keeps_a_loadable_checkpoint(tmp_path):
    experiment = small_experiment()
    with pytest.raises(step_lib.NonFiniteError, match=r"the loss was not finite at step 3; the last good checkpoint, ckpt-2, is kept"):
        train.fit(experiment, tmp_path / "run", train_data=unchecked_dataset(images_with_nan_batch()),
                  test_data=unchecked_dataset(images_with_nan_batch()[:16] * 0), progress=False)  # fmt: skip
    assert tf.train.latest_checkpoint(tmp_path / "run" / "checkpoints").endswith("ckpt-2")
    model = rundir.restore_model(tmp_path / "run", image_shape=IMAGE_SHAPE)
    assert all(np.all(np.isfinite(variable.numpy())) for variable in model.variables)


def test_skip_mode_skips_and_counts_nonfinite_batches(tmp_path):
    experiment = small_experiment(**{"train.on_nonfinite": "skip"})
    result = train.fit(experiment, tmp_path / "run", train_data=unchecked_dataset(images_with_nan_batch()),
                       test_data=unchecked_dataset(images_with_nan_batch()[:16] * 0), progress=False)  # fmt: skip
    assert result.history["skipped"].tolist() == [1, 1, 2, 2]  # rows at steps 4, 8, 12, 16; one bad batch an epoch
    assert np.all(np.isfinite(result.history["train_loss"]))
    assert all(np.all(np.isfinite(variable.numpy())) for variable in result.model.variables)


def test_divergent_learning_rate_stops_with_a_clear_error(tmp_path):
    images = (np.random.default_rng(1).random((64, *IMAGE_SHAPE)) < 0.5).astype(np.float32)
    # Adam moves each weight by up to the learning rate a step: 1e12 overflows float32 in the second step.
    experiment = small_experiment(**{"train.learning_rate": 1e12, "train.checkpoint_every": 1})
    with pytest.raises(step_lib.NonFiniteError, match=r"was not finite at step 2; the last good checkpoint, ckpt-1, is kept"):
        train.fit(experiment, tmp_path / "run", train_data=data.from_arrays(images, batch_size=8, prefetch=False),
                  test_data=data.from_arrays(images, batch_size=8), progress=False)  # fmt: skip
    rundir.restore_model(tmp_path / "run", image_shape=IMAGE_SHAPE)  # the kept checkpoint still loads


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((16, 4, 4, 1), 2.0, np.float32), r"bernoulli likelihood needs pixels in \[0, 1\].*spans \[2, 2\]"),
        (np.full((16, 4, 4, 1), np.nan, np.float32), "NaN or Inf pixels"),
        (np.zeros((16, 16), np.float32), r"expected batches of images \[b, H, W, C\] with known H, W, C; got \(None, 16\)"),
    ],
)
def test_unusable_training_data_is_refused_before_training(images, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train.fit(small_experiment(), tmp_path / "run", train_data=unchecked_dataset(images),
                  test_data=unchecked_dataset(images), progress=False)  # fmt: skip
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "history.csv").exists()


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    images = (np.random.default_rng(2).random((32, *IMAGE_SHAPE)) < 0.5).astype(np.float32)
    experiment = small_experiment(**{"train.epochs": 1, "train.max_checkpoints": 3})
    train.fit(experiment, tmp_path / "run", train_data=data.from_arrays(images, batch_size=8, prefetch=False),
              test_data=data.from_arrays(images, batch_size=8), progress=False)  # fmt: skip
    folder = tmp_path / "run" / "checkpoints"
    saved = {number: checkpoint_weights(folder / f"ckpt-{number}") for number in (2, 4)}
    newest = next(folder.glob("ckpt-4.data-*"))
    newest.write_bytes(newest.read_bytes()[:10])  # truncated, as by a full disk
    with pytest.warns(rundir.CheckpointWarning, match="ckpt-4 .* damaged and skipped .* continuing from ckpt-2"):
        model = rundir.restore_model(tmp_path / "run", image_shape=IMAGE_SHAPE)
    tf.train.Checkpoint(model=model).write(str(tmp_path / "restored"))  # its weights under the same names
    restored = checkpoint_weights(tmp_path / "restored")
    assert restored.keys() == saved[2].keys() and len(restored) >= 4
    for name, value in restored.items():  # the weights of the one before, not those of a fresh model or ckpt-4
        np.testing.assert_array_equal(value, saved[2][name], err_msg=name)
    assert any(not np.array_equal(saved[2][name], saved[4][name]) for name in restored)
    for data_file in folder.glob("ckpt-*.data-*"):
        data_file.write_bytes(b"garbage")
    with pytest.raises(rundir.RunDirError, match="no checkpoint in .* could be read"):
        rundir.restore_model(tmp_path / "run", image_shape=IMAGE_SHAPE)


def checkpoint_weights(prefix) -> dict:
    """{name: value} of the model's weights in the checkpoint at `prefix` (names start with "model/")."""
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}


def test_cli_reports_a_nonfinite_stop_in_one_line(mnist_data_dir, tmp_path, capsys):
    from tfvae import cli

    status = cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(tmp_path / "run"),
                       "--learning-rate", "1e12", "--set", "train.checkpoint_every=1", "--no-progress"])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()  # (TFDS may first show its preparation progress)
    assert status == 2 and lines[-1].startswith("tfvae: error: training stopped: the")
    assert not any("Traceback" in line for line in lines)
