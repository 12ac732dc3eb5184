"""Images in memory, batched as float32 pixels in [0, 1]: `ArraySource`, and `tf.data` on request.

Every source ends here: uint8 (or float) arrays [N, H, W, C] -> `from_arrays` (or a folder of PNG/JPEG files ->
`from_directory`), which returns an `ArraySource`: the images held in memory (with their side data, `tfvae.protocol`),
and batch k of a pass as a stateless function of (pass seed, k): a stateless permutation of the indices
(`tf.random.experimental.index_shuffle`), `tf.gather`, scaling, and for "dynamic" binarization
`tf.random.stateless_uniform`. `fit` gathers its batches straight from it; `as_dataset()` gives the same batches
as a `tf.data.Dataset` for anything else. Named datasets (TFDS, MNIST offline) come through `tfvae.data`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfvae import checks
from tfvae.config import BINARIZATIONS
from tfvae.pixels import scale_pixels, scale_pixels_numpy

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataNotFoundError(FileNotFoundError):
    """A dataset is not available locally and could not be obtained."""


def check_binarize(binarize: str) -> None:
    if binarize not in BINARIZATIONS:
        raise ValueError(f"binarize must be one of {', '.join(map(repr, BINARIZATIONS))}; got {binarize!r}")


def binarize_once(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed Bernoulli draw of every pixel of uint8 `images` (any shape): float32 0.0 or 1.0, the same shape.

    A pixel is 1.0 where `default_rng(seed).random(shape, dtype=float32) < pixel / 255`: a dynamic binarization
    drawn once, so the images are the same at every pass (the leaderboard's test set depends on this exact stream).
    """
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"binarize_once takes uint8 images (0..255); got dtype {array.dtype}")
    pixels = scale_pixels_numpy(array)
    return (np.random.default_rng(seed).random(pixels.shape, dtype=np.float32) < pixels).astype(np.float32)


def _validate_images(images) -> np.ndarray:
    """Checks images and returns them as uint8 (kept) or float32 in [0, 1], shape [N, H, W, C]."""
    array = np.asarray(images)
    if array.ndim not in (3, 4):
        raise ValueError(f"images must have shape [N, H, W] or [N, H, W, C]; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"images is empty; got shape {array.shape}")
    if array.ndim == 3:
        array = array[..., None]
    if array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels (last axis); got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        integer = np.issubdtype(array.dtype, np.integer)
        kind = "integer images must be uint8 (0..255)" if integer else "images must be numeric"
        raise ValueError(f"{kind}; got dtype {array.dtype}. Pass uint8 or floats in [0, 1]")
    for label, bad in (("NaN", np.isnan(array)), ("infinite (Inf)", np.isinf(array))):
        if bad.any():
            raise ValueError(f"images contain {int(bad.sum())} {label} values; pixels must be finite, in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"float images must lie in [0, 1] (uint8 is scaled by 1/255); got min {low:g}, max {high:g}")
    return array.astype(np.float32)


def _validate_labels(labels, n: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"labels must have shape [N] with N = {n} (one per image); got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {array.dtype}")
    return array.astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """Images (and labels) held in memory, and the recipe that turns them into batches.

    What `from_arrays`, `load` and `from_directory` return. Iterating it
    yields its batches (float32 images [b, H, W, C] in [0, 1], and int64
    labels [b] if it has labels); `as_dataset()` gives them as a
    `tf.data.Dataset`. `fit` trains on it without `tf.data`: `batch(s, k)` is
    batch k of the pass with seed s, the values the dataset yields. A
    `tf.data.Dataset` given to `fit` (a mapped one, say) trains through an
    iterator instead, with other draws.
    """

    pixels: tf.Tensor  # uint8 (scaled by 1/255) or float32 in [0, 1], [N, H, W, C]
    labels: tf.Tensor | None  # int64 [N], or None: the side data "label"
    batch_size: int
    binarize: str = "none"
    shuffle: bool = False
    drop_remainder: bool = False
    seed: int = 0  # the seed of the pass orders and binarizations (training loops derive theirs from it)
    prefetch: bool = True  # whether `as_dataset` prefetches (not when it will be repeated and checkpointed)
    extra_side_data: Mapping[str, tf.Tensor] = dataclasses.field(default_factory=dict)  # more side data, [N, ...]

    @property
    def side_data(self) -> dict[str, tf.Tensor]:
        """What travels with each image besides its pixels (`tfvae.protocol`): {"label": int64 [N]} when there
        are labels, plus any other named arrays [N, ...] (ground-truth factors, ...); {} for images alone."""
        labels = {} if self.labels is None else {"label": self.labels}
        return {**labels, **self.extra_side_data}

    def adding_side_data(self, side_data: Mapping[str, np.ndarray]) -> ArraySource:
        """This source with more named arrays [N, ...] travelling with its images (e.g. {"factors": [N, F]})."""
        n = int(self.pixels.shape[0])
        added = {name: tf.constant(_validate_side_data(name, values, n)) for name, values in side_data.items()}
        return dataclasses.replace(self, extra_side_data={**self.extra_side_data, **added})

    def keeping_side_data(self, names) -> ArraySource:
        """This source with only the side data named in `names` (none: batches of images alone)."""
        side = {name: values for name, values in self.side_data.items() if name in names}
        return dataclasses.replace(self, labels=side.pop("label", None), extra_side_data=side)

    def element(self, images: tf.Tensor, index: tf.Tensor):
        """A batch as the model takes it: `images` [b, H, W, C] alone; with labels only, (images, labels [b]);
        with other side data, (images, {name: [b, ...]}) of the images at `index` [b] (`tfvae.protocol`)."""
        side = {name: tf.gather(values, index) for name, values in self.side_data.items()}
        if not side:
            return images
        return (images, side["label"]) if list(side) == ["label"] else (images, side)

    @property
    def images(self) -> np.ndarray:
        """The images as held, [N, H, W, C] (uint8, or float32 in [0, 1]); not binarized."""
        return self.pixels.numpy()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(int(d) for d in self.pixels.shape[1:])

    @property
    def num_examples(self) -> int:
        """Images used in one pass (a dropped remainder excluded)."""
        n = int(self.pixels.shape[0])
        return (n // self.batch_size) * self.batch_size if self.drop_remainder else n

    @property
    def num_batches(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        return iter(self._dataset)

    @functools.cached_property
    def _dataset(self) -> tf.data.Dataset:
        """`as_dataset()`, made once: each iteration of it is a new pass."""
        return self._make_dataset(self.prefetch)

    def indices(self, pass_seed: tf.Tensor, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
        """Which images fill positions start..stop-1 of a pass, int64 [stop - start].

        A stateless permutation of 0..N-1 chosen by `pass_seed` (identity
        without shuffling), evaluated only at the positions asked for.
        """
        n = int(self.pixels.shape[0])
        position = tf.range(tf.cast(start, tf.int64), tf.minimum(tf.cast(stop, tf.int64), n))
        if not self.shuffle:
            return position
        seed = tf.stack([tf.cast(pass_seed, tf.int64), tf.constant(0, tf.int64)])
        return tf.random.experimental.index_shuffle(position, seed, n - 1)

    def batch(self, pass_seed: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Batch k of the pass with seed `pass_seed`: (images float32 [b, H, W, C], their indices int64 [b])."""
        index = self.indices(pass_seed, k * self.batch_size, (k + 1) * self.batch_size)
        return self.preprocess(tf.gather(self.pixels, index), pass_seed, k), index

    def preprocess(self, pixels: tf.Tensor, pass_seed: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        """Gathered pixels of batch k [b, H, W, C] -> float32 in [0, 1], scaled and binarized."""
        x = scale_pixels(pixels) if self.pixels.dtype == tf.uint8 else tf.cast(pixels, tf.float32)
        if self.binarize == "threshold":
            return tf.cast(x >= 0.5, tf.float32)
        if self.binarize == "dynamic":
            seed = tf.stack([tf.cast(pass_seed, tf.int64), tf.cast(k, tf.int64) + 1])
            return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed, alg="philox") < x, tf.float32)
        return x

    def as_dataset(self, prefetch: bool | None = None) -> tf.data.Dataset:
        """The batches as a `tf.data.Dataset`: a new pass order (and binarization) every iteration.

        A stateless function of (pass seed, k) per batch, so the iterator's
        state is a few counters: `iter(ds.repeat().prefetch(2))` checkpoints
        and restores exactly, even at a pass boundary, which a prefetch inside
        the repeat does not (hence `prefetch=False` for such use; default: the
        source's own `prefetch`). The same dataset object each time, unless
        `prefetch` differs from the source's.
        """
        if prefetch is None or prefetch == self.prefetch:
            return self._dataset
        return self._make_dataset(prefetch)

    def _make_dataset(self, prefetch: bool) -> tf.data.Dataset:
        batch_dim = self.batch_size if self.drop_remainder else None
        shape = [batch_dim, *self.pixels.shape[1:]]

        def make_batch(epoch_seed, k):
            x, index = self.batch(epoch_seed, k)
            element = self.element(tf.ensure_shape(x, shape), index)
            return tf.nest.map_structure(lambda part: tf.ensure_shape(part, [batch_dim, *part.shape[1:]]), element)

        def epoch(epoch_seed):
            batches = tf.data.Dataset.range(self.num_batches)
            return batches.map(lambda k: make_batch(epoch_seed, k), num_parallel_calls=tf.data.AUTOTUNE)

        # One random seed per pass (a new one each time the dataset is iterated, e.g. by repeat()).
        seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).take(1)
        ds = seeds.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(self.num_batches))
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False  # injected buffers would bloat checkpoints
        ds = ds.with_options(options)
        return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def from_arrays(images, labels=None, *, batch_size: int, binarize: str = "none", shuffle: bool = False,
                seed: int = 0, drop_remainder: bool = False, prefetch: bool = True,
                side_data: Mapping[str, np.ndarray] | None = None) -> ArraySource:
    """In-memory images (uint8 [N, H, W(, C)] or floats in [0, 1]) as an `ArraySource` of float32 batches.

    Its batches are (images, int64 labels [b]) when labels are given; with `side_data` (more named arrays
    [N, ...] that travel with the images, e.g. {"factors": int [N, F]}; `tfvae.protocol`), (images, {name:
    [b, ...]}) with the labels under "label". "threshold" is pixel >= 0.5
    (= rounding, for uint8 sources); "dynamic" draws Bernoulli(pixel) afresh every pass.
    `shuffle` gives a new permutation every pass (each iteration, e.g. of `as_dataset().repeat()`).
    Both are reproducible: sources with the same seed give the same batches.
    """
    checks.positive_int(batch_size, "batch_size")
    check_binarize(binarize)
    pixels = _validate_images(images)
    n = len(pixels)
    targets = None if labels is None else tf.constant(_validate_labels(labels, n))
    batch_size = int(batch_size)
    if drop_remainder and n < batch_size:
        raise ValueError(f"drop_remainder=True with batch_size {batch_size} > {n} images leaves no batches")
    source = ArraySource(tf.constant(pixels), targets, batch_size, binarize, shuffle, drop_remainder, seed, prefetch)
    return source.adding_side_data(side_data) if side_data else source


def _validate_side_data(name: str, values, n: int) -> np.ndarray:
    if name == "label":
        raise ValueError('side_data may not name "label": give the labels as from_arrays(images, labels, ...)')
    array = np.asarray(values)
    if array.ndim < 1 or len(array) != n or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"side_data[{name!r}] must be numbers [N, ...] with N = {n} (one row per image); got "
                         f"{array.dtype} of shape {array.shape}")
    return array


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [H, W, c] (c in 1..4) to [H, W, channels] (1 or 3); alpha is dropped."""
    image = image[..., :1] if image.shape[-1] in (1, 2) else image[..., :3]
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return tf.image.rgb_to_grayscale(tf.constant(image)).numpy()


def _decode_image_file(path: pathlib.Path) -> np.ndarray:
    """The pixels of one PNG/JPEG file, uint8 [H, W, c]; a ValueError naming the file if it cannot be decoded."""
    try:
        return tf.io.decode_image(tf.io.read_file(str(path)), channels=0, expand_animations=False).numpy()
    except tf.errors.OpError as error:
        detail = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", (error.message or "").strip().split("\n")[0]).strip(" .")
        raise ValueError(f"cannot read image {path}: {detail[:200] or type(error).__name__}; "
                         "remove or replace the file") from error


def from_directory(path, *, batch_size: int, binarize: str = "none", shuffle: bool = False, seed: int = 0,
                   drop_remainder: bool = False, image_size: tuple[int, int] | None = None,
                   grayscale: bool | None = None, with_labels: bool = False) -> ArraySource:
    """PNG/JPEG files under `path` (recursive, sorted) through `from_arrays`.

    grayscale: True -> 1 channel, False -> 3, None -> 1 if every file is grey else 3.
    image_size: (H, W) to resize to; without it all files must share one size.
    with_labels: label = index of the file's top-level subfolder in sorted order
    (every file must then sit in a subfolder); yields (images, labels).
    Every file is decoded here, so an unreadable one raises a ValueError that names it.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise DataNotFoundError(f"image directory {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no PNG/JPEG images ({', '.join(_IMAGE_SUFFIXES)}) found under {root}")
    decoded = [_decode_image_file(f) for f in files]
    if grayscale is None:
        grayscale = all(image.shape[-1] in (1, 2) for image in decoded)
    channels = 1 if grayscale else 3
    images = []
    for file, image in zip(files, decoded):
        image = _to_channels(image, channels)
        if image_size is not None:
            resized = tf.image.resize(image, image_size, antialias=True)
            image = tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8).numpy()
        elif images and image.shape[:2] != images[0].shape[:2]:
            raise ValueError(f"image sizes differ: {files[0]} is {images[0].shape[0]}x{images[0].shape[1]} but "
                             f"{file} is {image.shape[0]}x{image.shape[1]}; pass image_size=(H, W) to resize")
        images.append(image)
    labels = None
    if with_labels:
        loose = [f for f in files if len(f.relative_to(root).parts) < 2]
        if loose:
            raise ValueError(f"with_labels needs every image in a class subfolder of {root}; {loose[0]} is not")
        classes = sorted({f.relative_to(root).parts[0] for f in files})
        labels = np.array([classes.index(f.relative_to(root).parts[0]) for f in files], np.int64)
    return from_arrays(np.stack(images), labels, batch_size=batch_size, binarize=binarize, shuffle=shuffle,
                       seed=seed, drop_remainder=drop_remainder)


def image_shape(data) -> tuple[int, int, int]:
    """(H, W, C) of the images of an `ArraySource` or a batched dataset, with or without labels."""
    if isinstance(data, ArraySource):
        return data.image_shape
    spec = data.element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    shape = tuple(spec.shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"expected batches of images [b, H, W, C] with known H, W, C; got {spec.shape}")
    return tuple(int(d) for d in shape)


def num_examples(data) -> int:
    """Images in one pass: an `ArraySource` knows; other finite datasets are counted by a full pass."""
    if isinstance(data, ArraySource):
        return data.num_examples
    if data.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("num_examples: the dataset is infinite (repeat()); pass the dataset before repeating")
    count = data.reduce(tf.constant(0, tf.int64),
                        lambda total, element: total + tf.shape(tf.nest.flatten(element)[0], out_type=tf.int64)[0])
    return int(count)


def as_dataset(data) -> tf.data.Dataset:
    """`data.as_dataset()` for an `ArraySource`; a `tf.data.Dataset` as it is."""
    return data.as_dataset() if isinstance(data, ArraySource) else data


__all__ = ["ArraySource", "DataNotFoundError", "as_dataset", "binarize_once", "check_binarize", "from_arrays",
           "from_directory", "image_shape", "num_examples"]
