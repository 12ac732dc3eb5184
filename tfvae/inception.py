"""FID proper: the Frechet distance in Inception-v3 pool features, when Keras can load the ImageNet weights.

The standard protocol (Heusel et al., 2017): images resized to 299x299 (bilinear), grey tiled to RGB, scaled
to [-1, 1], the 2048-d global-average-pool output of Inception-v3 as features, and the Frechet distance between
the two sets' feature Gaussians (`tfvae.sample_quality.frechet_distance`); N >= 2049 images a set (papers use
10,000 or 50,000: the value is biased upwards at small N, so compare equal N only).

The weights are Keras's (`keras.applications.InceptionV3(weights="imagenet")`, 87 MB, downloaded once into
~/.keras/models), which no package registry ships: on a machine without the internet (this project's
development machine) FID is unavailable, and `unavailable_reason()` says why in one line within seconds
instead of a Keras download error after a stalled connection; `tfvae.features` and the classifier Frechet
distance work there. On Colab, or with `weights="path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"`,
it works anywhere. Keras's weights are not the 2015 TensorFlow graph that the original FID code (and
pytorch-fid) load, so values come close to published FIDs but are not identical to them.

    reason = unavailable_reason()
    if reason is None:
        fid = frechet_inception_distance(generated_images, test_images)
    else:
        print("FID skipped:", reason)
"""

from __future__ import annotations

import functools
import os
import pathlib
import socket
import urllib.parse
import urllib.request

import numpy as np

from tfvae import checks, features, sample_quality

__all__ = [
    "FEATURE_SIZE",
    "IMAGE_SIZE",
    "InceptionUnavailableError",
    "frechet_inception_distance",
    "inception_features",
    "load_inception",
    "unavailable_reason",
]

WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/{WEIGHTS_FILE}"
FEATURE_SIZE = 2048
IMAGE_SIZE = 299
_PROBE_SECONDS = 3.0  # Keras's download (urllib, no timeout) can stall for minutes on a filtered network


class InceptionUnavailableError(RuntimeError):
    """The Inception-v3 weights cannot be loaded here; the message is one line saying why and what to do."""


def _cached_weights() -> pathlib.Path | None:
    """Keras's cached copy of the weights (KERAS_HOME or ~/.keras, else /tmp/.keras), if there is one."""
    homes = [os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "/tmp/.keras"]
    for home in homes:
        path = pathlib.Path(home) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    return None


def _unreachable(url: str, timeout: float) -> str | None:
    """Why the host of `url` (or the HTTPS proxy) cannot be reached within `timeout` s; None when it can."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"{host}:{port} is unreachable ({error.strerror or error})"
    return None


def unavailable_reason(weights: str | os.PathLike | None = None) -> str | None:
    """None when Inception-v3 can probably be loaded; else one line saying why not and how to provide it.

    `weights` is a path to Keras's no-top Inception-v3 .h5 file; None means Keras's download (or its cache).
    Takes at most a few seconds (one connection attempt).
    """
    if weights is not None:
        return None if pathlib.Path(weights).is_file() else f"no Inception-v3 weights file at {weights}"
    if _cached_weights() is not None:
        return None
    problem = _unreachable(WEIGHTS_URL, _PROBE_SECONDS)
    if problem is None:
        return None
    return (f"FID needs the Inception-v3 ImageNet weights, which are not in Keras's cache and {problem}; "
            f"run once online (e.g. Colab) or pass weights= a copy of {WEIGHTS_FILE}")


def load_inception(weights: str | os.PathLike | None = None):
    """Keras's Inception-v3 without its classifier, average-pooled: images [b, 299, 299, 3] in [-1, 1] ->
    features [b, 2048]. Loaded once per weights path.

    Raises:
        InceptionUnavailableError: one line, when the weights are not cached and cannot be downloaded (decided
            in seconds), or when Keras fails to load them.
    """
    reason = unavailable_reason(weights)
    if reason is not None:
        raise InceptionUnavailableError(reason)
    return _load(None if weights is None else str(pathlib.Path(weights).resolve()))


@functools.lru_cache(maxsize=2)
def _load(weights: str | None):
    import keras  # Keras 3 comes with TensorFlow >= 2.16; imported here, as only FID needs it

    try:
        return keras.applications.InceptionV3(weights=weights or "imagenet", include_top=False, pooling="avg",
                                              input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception for a failed download
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise InceptionUnavailableError(f"Keras could not load the Inception-v3 weights "
                                        f"({type(error).__name__}: {first_line})") from error


def _inception_inputs(pixels: np.ndarray):
    """float32 images [b, H, W, 1 or 3] in [0, 1] -> [b, 299, 299, 3] in [-1, 1] (bilinear resize)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(pixels)
    if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    x = tf.image.resize(x * 255.0, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear")
    return x / 127.5 - 1.0  # keras.applications.inception_v3.preprocess_input


def inception_features(images, weights: str | os.PathLike | None = None, batch_size: int = 50) -> np.ndarray:
    """Inception-v3 pool features of images [N, H, W, 1 or 3] (uint8, or floats in [0, 1]): float32 [N, 2048].

    Raises:
        InceptionUnavailableError: see `load_inception`.
        ValueError: images that are not [N, H, W, 1 or 3] uint8 or floats in [0, 1].
    """
    pixels = features.as_unit_floats(images)
    if pixels.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels for Inception-v3, got {pixels.shape[-1]}")
    batch_size = checks.positive_int(batch_size, "batch_size")
    model = load_inception(weights)
    return np.concatenate([model(_inception_inputs(pixels[first:first + batch_size]), training=False).numpy()
                           for first in range(0, len(pixels), batch_size)])


def frechet_inception_distance(images_a, images_b, weights: str | os.PathLike | None = None,
                               batch_size: int = 50) -> float:
    """FID: the Frechet distance between two image sets in Inception-v3 pool features (each N >= 2049).

    Raises:
        InceptionUnavailableError: one line, when the weights cannot be loaded (offline: within seconds).
        ValueError: fewer than 2049 images a set, or images of the wrong shape or range.
    """
    for images, name in ((images_a, "images_a"), (images_b, "images_b")):
        count = len(features.as_unit_floats(images, name=name))
        if count <= FEATURE_SIZE:
            raise ValueError(f"{name} has {count} images; FID's {FEATURE_SIZE}-d features need at least "
                             f"N = {FEATURE_SIZE + 1} for a non-singular covariance")
    load_inception(weights)  # fails before any image is processed
    stats_a, stats_b = (sample_quality.feature_statistics(inception_features(images, weights, batch_size))
                        for images in (images_a, images_b))
    return sample_quality.frechet_distance(stats_a.mean, stats_a.covariance, stats_b.mean, stats_b.covariance)
