"""Device placement: train.device names a device TensorFlow has, or fails in one clear line."""

import pytest
import tensorflow as tf

from tfvae import cli, config, devices


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(devices, "gpus", list)


def test_cpu_and_auto_without_a_gpu_are_the_cpu(no_gpu):
    assert devices.resolve("cpu") == "/CPU:0"
    assert devices.resolve("auto") == "/CPU:0"


def test_gpu_and_auto_with_a_gpu_are_the_first_gpu(monkeypatch):
    monkeypatch.setattr(devices, "gpus", lambda: ["/physical_device:GPU:0"])
    assert devices.resolve("gpu") == "/GPU:0"
    assert devices.resolve("auto") == "/GPU:0"
    assert devices.resolve("cpu") == "/CPU:0"  # asked for, even beside a GPU


def test_gpu_without_one_is_a_clear_error(no_gpu):
    with pytest.raises(devices.DeviceError, match="'gpu' but TensorFlow .* sees no GPU.*--device cpu"):
        devices.resolve("gpu")


def test_unknown_device_is_refused_by_the_config():
    with pytest.raises(config.ConfigError, match="train.device must be one of auto, cpu, gpu; got 'tpu'"):
        config.TrainConfig(device="tpu")


def test_variables_made_under_placement_live_there():
    with devices.placement("cpu") as name:
        variable = tf.Variable(tf.zeros([2]))
    assert name == "/CPU:0" and variable.device.endswith("CPU:0")


def test_detected_gpus_match_tensorflows_list():
    assert devices.gpus() == [d.name for d in tf.config.list_physical_devices("GPU")]


@pytest.mark.parametrize("device, message", [
    ("gpu", "sees no GPU"),
    ("tpu", "train.device must be one of auto, cpu, gpu"),
])
def test_cli_device_errors_end_in_one_line(device, message, no_gpu, mnist_data_dir, tmp_path, capsys):
    status = cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(tmp_path / "run"),
                       "--no-progress", "--no-figures", "--device", device])
    error = capsys.readouterr().err
    assert status == 2 and message in error and error.count("\n") == 1, error
    assert not (tmp_path / "run" / "checkpoints").exists()
