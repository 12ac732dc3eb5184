"""A small convolutional classifier whose penultimate layer is a feature space for comparing image sets.

The classifier Frechet distance and the precision and recall of samples (`tfvae.sample_quality`) compare
generated and real images in the features of a network trained to tell the dataset's classes apart: two
convolution blocks (3x3 convolution, ReLU, 2x2 max pool), a max pool onto a fixed 4x4 grid, and one ReLU
layer of `feature_size` units (the features), then the class logits. The grid pool makes the parameter count
independent of the image size, so the same code serves 28x28 MNIST and 64x64 dSprites (about 151,000
parameters, 0.6 MB of float32).

tfvae trains it once per dataset (`tools/train_feature_classifier.py --dataset NAME`) and ships the weights in
the package: `feature_weights/<dataset>.npz` (plain arrays, loaded with `allow_pickle=False`) with
`feature_weights/<dataset>.json` beside it (test accuracy, parameter count, epochs, seed, commit, command).
Any `<name>.npz` in that folder is a known dataset: committing a file is all a new dataset needs.

    classifier = load_classifier("mnist")
    features = classifier_features(images, classifier)      # [N, 128] float32

This is the same idea as FID (Heusel et al., 2017) with a domain-specific network in place of Inception-v3,
as the "FID with a LeNet" of Binkowski et al. (2018) and the classifier features in Kynkaanniemi et al.
(2019); distances in these features are not comparable with FID numbers.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf

from tfvae import checks

__all__ = [
    "TRAIN_SCRIPT",
    "WEIGHTS_DIR",
    "FeatureClassifier",
    "accuracy",
    "as_unit_floats",
    "classifier_features",
    "known_datasets",
    "load_classifier",
    "parameter_count",
    "save_classifier",
    "stated_results",
    "train_classifier",
]

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "feature_weights"
TRAIN_SCRIPT = "tools/train_feature_classifier.py"
_CONFIG_KEYS = ("input_shape", "num_classes", "channels", "feature_size", "grid")


class FeatureClassifier(snt.Module):
    """Images [b, H, W, C] in [0, 1] -> class logits [b, num_classes]; `features` gives [b, feature_size].

    Parameters are created from the first input's shape (any H, W >= 4 and any C).
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = (32, 64), feature_size: int = 128,
                 grid: int = 4, name: str = "feature_classifier"):
        super().__init__(name=name)
        self.num_classes = checks.positive_int(num_classes, "num_classes")
        self.channels = checks.positive_ints(channels, "channels")
        self.feature_size = checks.positive_int(feature_size, "feature_size")
        self.grid = checks.positive_int(grid, "grid")
        self.input_shape: tuple[int, int, int] | None = None
        self._convs = [snt.Conv2D(size, 3, name=f"conv_{index}") for index, size in enumerate(self.channels)]
        self._hidden = snt.Linear(self.feature_size, name="features")
        self._logits = snt.Linear(self.num_classes, name="logits")

    def features(self, images: tf.Tensor) -> tf.Tensor:
        """The penultimate layer: float32 [b, feature_size] (ReLU outputs, so >= 0)."""
        if self.input_shape is None:
            self.input_shape = tuple(int(size) for size in images.shape[1:])
        h = tf.convert_to_tensor(images, tf.float32)
        for conv in self._convs:
            h = tf.nn.max_pool2d(tf.nn.relu(conv(h)), 2, 2, "SAME")
        h = _grid_pool(h, self.grid)
        return tf.nn.relu(self._hidden(snt.flatten(h)))

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """Class logits: float32 [b, num_classes]."""
        return self._logits(self.features(images))


def _grid_pool(h: tf.Tensor, grid: int) -> tf.Tensor:
    """Max pool [b, h, w, c] onto at most grid x grid cells (windows of ceil(side / grid) pixels)."""
    window = [max(1, math.ceil(int(side) / grid)) for side in h.shape[1:3]]
    return tf.nn.max_pool2d(h, window, window, "SAME")


def parameter_count(classifier: FeatureClassifier) -> int:
    """The number of scalars in the classifier's variables (after it was built)."""
    return int(sum(np.prod(variable.shape) for variable in classifier.variables))


# --------------------------------------------------------------------------- inputs
def as_unit_floats(images, image_shape: Sequence[int] | None = None, name: str = "images") -> np.ndarray:
    """uint8 images (0..255) or floats in [0, 1], [N, H, W, C], as float32 in [0, 1].

    Raises:
        ValueError: not 4-D, not `image_shape` per image, another dtype, floats outside [0, 1], or N = 0.
    """
    array = np.asarray(images)
    expected = "[N, " + ", ".join(map(str, image_shape)) + "]" if image_shape is not None else "[N, H, W, C]"
    if array.ndim != 4 or (image_shape is not None and tuple(array.shape[1:]) != tuple(image_shape)):
        raise ValueError(f"{name} must have shape {expected}, got {list(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {list(array.shape)}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise ValueError(f"{name} must be uint8 (0..255) or floats in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{name} must be floats in [0, 1] (or uint8), got values in [{array.min()}, {array.max()}]")
    return array


# --------------------------------------------------------------------------- training
def train_classifier(images, labels, *, epochs: int, batch_size: int = 128, learning_rate: float = 1e-3,
                     max_shift: int = 2, seed: int = 0, log: Callable[[str], None] | None = print,
                     **architecture) -> FeatureClassifier:
    """A FeatureClassifier trained with Adam on softmax cross-entropy, the learning rate on a cosine schedule
    from `learning_rate` to 0 (step by step).

    Args:
        images: [N, H, W, C] uint8 or floats in [0, 1].
        labels: int [N], classes 0 .. K-1 (K = max + 1 is the number of classes).
        epochs, batch_size, learning_rate: the schedule; each epoch is one pass in a seeded random order.
        max_shift: each training image is translated by up to this many pixels each way (zero-filled, as the
            datasets here have black backgrounds); 0 turns the augmentation off.
        seed: initial weights and batch order.
        log: called with one line per epoch (None: silent).
        architecture: FeatureClassifier's arguments (channels, feature_size, grid).
    """
    pixels = as_unit_floats(images)
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (len(pixels),) or labels.min() < 0:
        raise ValueError(f"labels must be {len(pixels)} class indices >= 0, got shape {list(labels.shape)}")
    checks.positive_int(epochs, "epochs")
    checks.positive_int(batch_size, "batch_size")
    if not (isinstance(max_shift, int) and max_shift >= 0):
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    tf.random.set_seed(seed)
    classifier = FeatureClassifier(int(labels.max()) + 1, **architecture)
    rate = tf.Variable(float(learning_rate), trainable=False)
    optimizer = snt.optimizers.Adam(rate)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, classifier(x)))
        gradients = tape.gradient(loss, classifier.trainable_variables)
        optimizer.apply(gradients, classifier.trainable_variables)
        return loss

    rng = np.random.default_rng(seed)
    steps_per_epoch = math.ceil(len(pixels) / batch_size)
    for epoch in range(1, epochs + 1):
        start, order, losses = time.time(), rng.permutation(len(pixels)), []
        for first in range(0, len(order), batch_size):
            done = ((epoch - 1) * steps_per_epoch + first // batch_size) / (epochs * steps_per_epoch)
            rate.assign(learning_rate * 0.5 * (1 + math.cos(math.pi * done)))
            batch = order[first:first + batch_size]
            losses.append(float(step(_shifted(pixels[batch], max_shift, rng), labels[batch])))
        if log is not None:
            log(f"epoch {epoch}/{epochs}: train cross-entropy {np.mean(losses):.4f} ({time.time() - start:.0f} s)")
    return classifier


def _shifted(pixels: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image [b, H, W, C] translated by its own random offset in [-max_shift, max_shift]^2, zero-filled."""
    if max_shift == 0:
        return pixels
    count, height, width, _ = pixels.shape
    padded = np.pad(pixels, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    top, left = rng.integers(0, 2 * max_shift + 1, (2, count))
    rows, columns = top[:, None] + np.arange(height), left[:, None] + np.arange(width)
    return padded[np.arange(count)[:, None, None], rows[:, :, None], columns[:, None, :]]


def _logits_in_batches(classifier: FeatureClassifier, pixels: np.ndarray, batch_size: int,
                       features: bool) -> np.ndarray:
    """The classifier's features or logits of float32 images, a batch at a time, concatenated."""
    function = _compiled(classifier, features)
    return np.concatenate([function(tf.constant(pixels[first:first + batch_size])).numpy()
                           for first in range(0, len(pixels), batch_size)])


def _compiled(classifier: FeatureClassifier, features: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """A tf.function of classifier.features (or __call__), one per classifier and output."""
    attribute = "_compiled_features" if features else "_compiled_logits"
    if not hasattr(classifier, attribute):
        setattr(classifier, attribute, tf.function(classifier.features if features else classifier.__call__))
    return getattr(classifier, attribute)


def accuracy(classifier: FeatureClassifier, images, labels, batch_size: int = 1000) -> float:
    """The fraction of images [N, H, W, C] whose most likely class is its label [N]."""
    pixels = as_unit_floats(images, classifier.input_shape)
    predicted = _logits_in_batches(classifier, pixels, batch_size, features=False).argmax(axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


def classifier_features(images, classifier: FeatureClassifier | str, batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer features of images [N, H, W, C] (uint8, or floats in [0, 1]): float32 [N, feature_size].

    `classifier` is a FeatureClassifier or the name of a dataset with committed weights (`known_datasets()`).
    """
    if isinstance(classifier, str):
        classifier = load_classifier(classifier)
    pixels = as_unit_floats(images, classifier.input_shape)
    return _logits_in_batches(classifier, pixels, checks.positive_int(batch_size, "batch_size"), features=True)


# --------------------------------------------------------------------------- weights on disk
def _key(variable: tf.Variable) -> str:
    """A variable's name inside the classifier, e.g. 'conv_0.w' (npz keys are file names: no '/')."""
    return ".".join(variable.name.split(":")[0].split("/")[-2:])


def save_classifier(classifier: FeatureClassifier, path: str | os.PathLike) -> pathlib.Path:
    """Writes the architecture and every variable as plain arrays to a compressed .npz file."""
    if classifier.input_shape is None:
        raise ValueError("the classifier has no weights yet: call it on images first")
    arrays = {_key(variable): variable.numpy() for variable in classifier.variables}
    config = {key: np.asarray(getattr(classifier, key), np.int64) for key in _CONFIG_KEYS}
    path = pathlib.Path(path)
    np.savez_compressed(path, **config, **arrays)
    return path


def known_datasets() -> tuple[str, ...]:
    """The datasets with committed classifier weights (feature_weights/<name>.npz), sorted."""
    return tuple(sorted(path.stem for path in WEIGHTS_DIR.glob("*.npz")))


def _weights_path(dataset: str | os.PathLike) -> pathlib.Path:
    """The .npz file of a known dataset's classifier, or `dataset` itself when it is an .npz path."""
    if str(dataset).endswith(".npz"):
        path = pathlib.Path(dataset)
        if not path.is_file():
            raise ValueError(f"no classifier weights file at {path}")
        return path
    if dataset not in known_datasets():
        raise ValueError(f"no feature classifier for dataset {dataset!r}; known: {', '.join(known_datasets())} "
                         f"(train one with `python {TRAIN_SCRIPT} --dataset {dataset}` and commit "
                         f"tfvae/feature_weights/{dataset}.npz)")
    return WEIGHTS_DIR / f"{dataset}.npz"


def load_classifier(dataset: str | os.PathLike) -> FeatureClassifier:
    """The committed classifier of a dataset ('mnist', 'fashion_mnist'), or one saved by `save_classifier`
    (a path ending in .npz). Loaded once per path and process.

    Raises:
        ValueError: a dataset without committed weights (naming the known ones and the training script).
    """
    return _load(_weights_path(dataset).resolve())


@functools.lru_cache(maxsize=8)
def _load(path: pathlib.Path) -> FeatureClassifier:
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    config = {key: arrays.pop(key) for key in _CONFIG_KEYS}
    classifier = FeatureClassifier(int(config["num_classes"]), channels=[int(c) for c in config["channels"]],
                                   feature_size=int(config["feature_size"]), grid=int(config["grid"]))
    classifier(tf.zeros([1, *(int(size) for size in config["input_shape"])]))  # creates the variables
    variables = {_key(variable): variable for variable in classifier.variables}
    if set(variables) != set(arrays):
        raise ValueError(f"{path} holds variables {sorted(arrays)}, the classifier has {sorted(variables)}")
    for key, variable in variables.items():
        variable.assign(arrays[key])
    return classifier


def stated_results(dataset: str | os.PathLike) -> dict:
    """The results file beside a classifier's weights (feature_weights/<dataset>.json, or the .npz path's
    .json): test accuracy, parameter count, epochs, seed, commit, command."""
    return json.loads(_weights_path(dataset).with_suffix(".json").read_text())
