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


def devices_asked_for(device: str) -> set[str]:
    """The devices that the ops of a function traced under `devices.placement(device)` ask for."""

    @tf.function
    def work(x):
        with devices.placement(device):
            return tf.reduce_sum(tf.square(x)) + 1.0

    graph = work.get_concrete_function(tf.TensorSpec([2], tf.float32)).graph
    return {op.device for op in graph.get_operations() if op.type in ("Square", "Sum", "AddV2")}


def test_ops_made_under_placement_ask_for_its_device(monkeypatch):
    # A traced graph records the device each op asks for, whatever the machine has: without the scope
    # these would be "" (TensorFlow's choice), so the test fails if placement only returned a name.
    monkeypatch.setattr(devices, "gpus", list)
    assert devices_asked_for("cpu") == {"/device:CPU:0"}
    monkeypatch.setattr(devices, "gpus", lambda: ["/physical_device:GPU:0"])
    assert devices_asked_for("auto") == {"/device:GPU:0"}
    assert devices_asked_for("cpu") == {"/device:CPU:0"}


def test_gpus_lists_the_gpus_tensorflow_sees_and_nothing_else(monkeypatch):
    machine = [tf.config.PhysicalDevice("/physical_device:CPU:0", "CPU"),
               tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
               tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU")]

    def listed(device_type=None):
        return [d for d in machine if device_type in (None, d.device_type)]

    monkeypatch.setattr(tf.config, "list_physical_devices", listed)
    assert devices.gpus() == ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert devices.resolve("auto") == "/GPU:0"
    machine[1:] = []  # a CPU-only machine
    assert devices.gpus() == [] and devices.resolve("auto") == "/CPU:0"


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
