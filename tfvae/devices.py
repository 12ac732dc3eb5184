"""Device placement: `train.device` ("auto", "cpu" or "gpu") -> a TensorFlow device scope.

    with devices.placement(experiment.train.device):
        tfvae.fit(experiment, run_dir)

Placement stays TensorFlow's: this only opens `tf.device("/GPU:0")` or
`tf.device("/CPU:0")` around the work, so variables and ops made inside go
there (ops with no GPU kernel still fall back to the CPU, TF's soft placement;
tf.data pipelines always run on the CPU). "auto" takes the first GPU when
TensorFlow sees one; on a machine without a usable GPU it is the CPU. More
than one device is the job of `tfvae.distribute`, not of this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf

from tfvae.config import DEVICES

_GPU_HELP = (
    "check `nvidia-smi`, install TensorFlow's GPU libraries (`pip install 'tensorflow[and-cuda]'`; "
    "on Colab choose Runtime > Change runtime type > GPU), or use --device cpu / --device auto"
)


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow sees, e.g. ["/physical_device:GPU:0"]."""
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def resolve(device: str) -> str:
    """The TensorFlow device name for `device`: "/GPU:0" or "/CPU:0".

    Raises:
      DeviceError: `device` is "gpu" and TensorFlow sees no GPU.
      ValueError: `device` is not one of DEVICES.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "/CPU:0"
    if gpus():
        return "/GPU:0"
    if device == "gpu":
        raise DeviceError(
            f"train.device is 'gpu' but TensorFlow {tf.__version__} sees no GPU on this machine; {_GPU_HELP}"
        )
    return "/CPU:0"


@contextlib.contextmanager
def placement(device: str) -> Iterator[str]:
    """A `tf.device` scope on the device `resolve(device)` names; yields that name."""
    name = resolve(device)
    with tf.device(name):
        yield name


def set_threads(threads: int) -> None:
    """Uses `threads` threads inside each op and between ops (0: TensorFlow's default, one per core).

    TensorFlow fixes its thread pools when it first runs an op; asking for a
    different number after that is an error naming the remedy.
    """
    if not threads:
        return
    config = tf.config.threading
    if (config.get_intra_op_parallelism_threads(), config.get_inter_op_parallelism_threads()) == (threads, threads):
        return
    try:
        config.set_intra_op_parallelism_threads(threads)
        config.set_inter_op_parallelism_threads(threads)
    except RuntimeError as error:
        raise RuntimeError(
            f"train.threads={threads} must be set before TensorFlow runs its first op; in a notebook or script, "
            f"call tfvae.devices.set_threads({threads}) first (the CLI does)"
        ) from error


__all__ = ["DeviceError", "gpus", "placement", "resolve", "set_threads"]
