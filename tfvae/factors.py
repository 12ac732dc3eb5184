"""Image datasets with ground-truth factors: every combination of factor values once, images made on demand.

    data = tfvae.factors.load_factor_dataset("dsprites_small")
    images, factors = data.sample(1000, seed=0)    # uint8 [1000, 32, 32, 1], int64 [1000, 5]
    source = data.as_source(batch_size=64)         # every image, for `tfvae.fit`

A `FactorDataset` is a grid of F factors (sizes K_1..K_F, each with its values) and a function from factor
indices [N, F] to uint8 images [N, H, W, C]. Image i of the grid has the factor indices of
`np.unravel_index(i, factor_sizes)` (the last factor varies fastest, as in the dSprites file).

The procedural sets are drawn here (`tfvae.render`), never stored: the full dSprites-sized grid is 737,280
images but nothing bigger than one sample is held. They follow the published datasets' factors, but their
pixels are ours: procedural, not comparable with published dSprites (or 3dshapes) numbers. TFDS's real
`dsprites` and `shapes3d` (downloaded when online) load the same way, held in memory (`load_tfds`).

By name, like any dataset: `load(name, split, batch_size, ...)` and `load_arrays(name, split)` give a factor
dataset's splits (`split_factors`: "train" every image, "test" a fixed sample of them) and any other name's
through `tfvae.data`, so a config with `data.name = "dsprites_small"` trains, evaluates and draws without
`train_data=` (`tfvae.rundir` and `tfvae.evaluation` load through them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping

import numpy as np

from tfvae import checks, render

__all__ = ["PROCEDURAL_NOTE", "FactorDataset", "DSPRITES_FACTORS", "SHAPES3D_FACTORS", "sprites_dataset",
    "scenes_dataset", "dsprites_procedural", "dsprites_small", "shapes_procedural", "shapes_small", "TFDS_FACTORS",
    "tfds_to_factors", "from_grid", "load_tfds", "FACTOR_DATASETS", "load_factor_dataset"]

PROCEDURAL_NOTE = "procedural, not comparable with published dSprites numbers"


@dataclasses.dataclass(frozen=True, eq=False)
class FactorDataset:
    """A full grid of factor combinations and the images that show them.

    Attributes:
      name: the registry name.
      factor_names: F names, e.g. ("shape", "scale", "orientation", "x_position", "y_position").
      factor_values: F arrays; `factor_values[f][k]` is the value of index k of factor f (units in `note`).
      image_shape: (H, W, C).
      renderer: factor indices int64 [N, F] -> uint8 images [N, H, W, C].
      note: where the images come from, and the units of the values.
    """

    name: str
    factor_names: tuple[str, ...]
    factor_values: tuple[np.ndarray, ...]
    image_shape: tuple[int, int, int]
    renderer: Callable[[np.ndarray], np.ndarray]
    note: str = ""

    def __post_init__(self):
        if len(self.factor_names) != len(self.factor_values) or not self.factor_names:
            raise ValueError(f"factor_names ({len(self.factor_names)}) and factor_values "
                             f"({len(self.factor_values)}) must name the same, non-zero number of factors")
        for name, values in zip(self.factor_names, self.factor_values):
            if np.ndim(values) != 1 or len(values) < 2:
                raise ValueError(f"factor_values of {name!r} must list at least 2 values; got shape "
                                 f"{np.shape(values)} (a constant factor carries no information)")
        checks.image_shape(self.image_shape)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """(K_1, ..., K_F): the number of values of each factor."""
        return tuple(len(values) for values in self.factor_values)

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    @property
    def num_images(self) -> int:
        """Every combination once: prod(factor_sizes)."""
        return math.prod(self.factor_sizes)

    def index_to_factors(self, index) -> np.ndarray:
        """Grid positions [N] -> factor indices int64 [N, F] (the last factor varies fastest)."""
        index = np.asarray(index, np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self.num_images):
            raise ValueError(f"index must lie in 0..{self.num_images - 1} for {self.name}; got "
                             f"{int(index.min())}..{int(index.max())}")
        return np.stack(np.unravel_index(index, self.factor_sizes), axis=-1).astype(np.int64)

    def factors_to_index(self, factor_indices) -> np.ndarray:
        """Factor indices [N, F] -> grid positions int64 [N] (inverse of `index_to_factors`)."""
        return np.ravel_multi_index(tuple(self.check_factors(factor_indices).T), self.factor_sizes).astype(np.int64)

    def check_factors(self, factor_indices, name: str = "factor_indices") -> np.ndarray:
        """`factor_indices` as int64 [N, F]; a ValueError naming `name` unless each is in 0..K_f - 1."""
        array = np.asarray(factor_indices)
        if array.ndim != 2 or array.shape[1] != self.num_factors:
            raise ValueError(f"{name} must have shape [N, {self.num_factors}] (one column per factor of "
                             f"{self.name}); got shape {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be integer indices; got dtype {array.dtype}")
        array = array.astype(np.int64)
        outside = (array < 0) | (array >= np.array(self.factor_sizes))
        if outside.any():
            column = int(np.argwhere(outside)[0, 1])
            raise ValueError(f"{name}: indices of factor {self.factor_names[column]!r} must lie in "
                             f"0..{self.factor_sizes[column] - 1}; got {int(array[outside][0])}")
        return array

    def values(self, factor_indices) -> np.ndarray:
        """Factor indices [N, F] -> the factors' values float64 [N, F]."""
        array = self.check_factors(factor_indices)
        return np.stack([np.asarray(v, np.float64)[array[:, f]] for f, v in enumerate(self.factor_values)], -1)

    def images(self, factor_indices) -> np.ndarray:
        """The images of factor indices [N, F]: uint8 [N, H, W, C], made on demand."""
        array = self.check_factors(factor_indices)
        if not len(array):
            return np.zeros((0, *self.image_shape), np.uint8)
        return self.renderer(array)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor combinations drawn uniformly (each factor independently): int64 [n, F]."""
        checks.positive_int(n, "n")
        return np.stack([rng.integers(0, size, int(n)) for size in self.factor_sizes], -1).astype(np.int64)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n images drawn uniformly with `np.random.default_rng(seed)`: (uint8 [n, H, W, C], int64 [n, F])."""
        factors = self.sample_factors(n, np.random.default_rng(seed))
        return self.images(factors), factors

    def as_source(self, n: int | None = None, *, seed: int = 0, batch_size: int, **kwargs):
        """A `tfvae.data.ArraySource` for training: `sample(n, seed)`, or every image in grid order (n=None).

        kwargs go to `tfvae.data.from_arrays` (shuffle, binarize, ...); the factors are not attached (use
        `sample` for them). The whole grid needs prod(factor_sizes) * H * W * C bytes: refused above 1 GB.
        """
        if n is None:
            needed = self.num_images * math.prod(self.image_shape)
            if needed > 2**30:
                raise ValueError(f"n=None would hold all {self.num_images} images of {self.name} "
                                 f"({needed / 2**30:.1f} GB); pass a sample size n")
            images = self.images(self.index_to_factors(np.arange(self.num_images)))
        else:
            images, _ = self.sample(n, seed)
        from tfvae import data  # TensorFlow is loaded only here

        return data.from_arrays(images, batch_size=batch_size, seed=seed, **kwargs)


# --------------------------------------------------------------------------- procedural datasets
DSPRITES_FACTORS = ("shape", "scale", "orientation", "x_position", "y_position")
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


def _sprite_renderer(values: tuple[np.ndarray, ...], size: int) -> Callable[[np.ndarray], np.ndarray]:
    def renderer(indices: np.ndarray) -> np.ndarray:
        return render.sprites(*(values[f][indices[:, f]] for f in range(5)), size=size)

    return renderer


def sprites_dataset(name: str, *, size: int, scales: int, orientations: int, positions: int) -> FactorDataset:
    """A dSprites-like grid: 3 shapes x `scales` x `orientations` x `positions` x `positions`, binary images.

    Values: shape 0 square, 1 ellipse, 2 heart (`render.SPRITE_SHAPES`); scale linearly in [0.5, 1] (relative
    size); orientation 2 pi k / orientations radians, in [0, 2 pi) (the published file lists linspace(0, 2 pi,
    40), both ends included); x and y linearly in [0, 1] (the extreme centres, `render.sprite_centre`; y
    downwards). The square repeats every pi / 2 and the ellipse every pi, as in dSprites.
    """
    values = (np.arange(3.0), np.linspace(0.5, 1.0, scales), 2 * np.pi * np.arange(orientations) / orientations,
              np.linspace(0.0, 1.0, positions), np.linspace(0.0, 1.0, positions))
    note = (f"{PROCEDURAL_NOTE}: dSprites-like sprites drawn by tfvae.render, {size}x{size}; scale relative, "
            "orientation in radians, positions in [0, 1]")
    return FactorDataset(name, DSPRITES_FACTORS, values, (size, size, 1), _sprite_renderer(values, size), note)


def _scene_renderer(values: tuple[np.ndarray, ...], size: int) -> Callable[[np.ndarray], np.ndarray]:
    def renderer(indices: np.ndarray) -> np.ndarray:
        floor, wall, obj, scale, shape, degrees = (values[f][indices[:, f]] for f in range(6))
        return render.scenes(floor, wall, obj, scale, shape, np.deg2rad(degrees), size=size)

    return renderer


def scenes_dataset(name: str, *, size: int, hues: int, scales: int, orientations: int) -> FactorDataset:
    """A 3dshapes-like grid: floor, wall and object hue (`hues` each) x `scales` x 4 shapes x `orientations`.

    Values: hues k / hues in [0, 1); scale linearly in [0.75, 1.25]; shape 0 cube, 1 cylinder, 2 sphere,
    3 pill (`render.SCENE_SHAPES`); orientation linearly in [-30, 30] degrees (3dshapes' ranges).
    """
    hue = np.arange(hues) / hues
    values = (hue, hue.copy(), hue.copy(), np.linspace(0.75, 1.25, scales), np.arange(4.0),
              np.linspace(-30.0, 30.0, orientations))
    note = (f"{PROCEDURAL_NOTE} (nor with 3dshapes): flat 2-D scenes drawn by tfvae.render, {size}x{size} RGB; "
            "hues in [0, 1), scale relative, orientation in degrees")
    return FactorDataset(name, SHAPES3D_FACTORS, values, (size, size, 3), _scene_renderer(values, size), note)


def dsprites_procedural() -> FactorDataset:
    """dSprites' grid drawn here: 3 shapes, 6 scales, 40 orientations, 32 x 32 positions; 737,280 64x64 images."""
    return sprites_dataset("dsprites_procedural", size=64, scales=6, orientations=40, positions=32)


def dsprites_small() -> FactorDataset:
    """The CPU-sized dSprites: 3 shapes, 6 scales, 10 orientations, 8 x 8 positions; 11,520 32x32 images."""
    return sprites_dataset("dsprites_small", size=32, scales=6, orientations=10, positions=8)


def shapes_procedural() -> FactorDataset:
    """3dshapes' grid drawn in 2-D: 10 x 10 x 10 hues, 8 scales, 4 shapes, 15 orientations; 480,000 64x64 RGB."""
    return scenes_dataset("shapes_procedural", size=64, hues=10, scales=8, orientations=15)


def shapes_small() -> FactorDataset:
    """The CPU-sized scenes: 6 x 6 x 6 hues, 4 scales, 4 shapes, 5 orientations; 17,280 32x32 RGB images."""
    return scenes_dataset("shapes_small", size=32, hues=6, scales=4, orientations=5)


# --------------------------------------------------------------------------- TFDS's real dsprites and shapes3d
TFDS_FACTORS: dict[str, tuple[str, ...]] = {"dsprites": DSPRITES_FACTORS, "shapes3d": SHAPES3D_FACTORS}


def _check_tfds_name(name: str) -> tuple[str, ...]:
    if name not in TFDS_FACTORS:
        raise ValueError(f"name must be one of {', '.join(TFDS_FACTORS)} (TFDS datasets with factors); got {name!r}")
    return TFDS_FACTORS[name]


def tfds_to_factors(name: str, features: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of TFDS features -> (uint8 images [N, H, W, C], factor indices int64 [N, F], values float64 [N, F]).

    `features` is a dict of batched tensors or arrays as TFDS yields them: "image" and, per factor,
    "label_<factor>" (the index) and "value_<factor>" (the value); other keys ("id") are ignored. TFDS's
    dsprites stores pixels as 0 and 1; they become 0 and 255 here, as the procedural sprites.
    """
    factor_names = _check_tfds_name(name)
    missing = [key for key in ("image", *(f"{p}_{f}" for f in factor_names for p in ("label", "value")))
               if key not in features]
    if missing:
        raise ValueError(f"features of {name} lack {', '.join(missing)}; got {', '.join(sorted(features))}")
    images = np.asarray(features["image"])
    if images.ndim == 3:
        images = images[None]
    if name == "dsprites" and images.size and images.max() <= 1:
        images = images * 255
    labels = np.stack([np.asarray(features[f"label_{f}"]).reshape(-1) for f in factor_names], -1).astype(np.int64)
    values = np.stack([np.asarray(features[f"value_{f}"]).reshape(-1) for f in factor_names], -1).astype(np.float64)
    if not len(images) == len(labels) == len(values):
        raise ValueError(f"features of {name}: {len(images)} images but {len(labels)} labels")
    return images.astype(np.uint8), labels, values


def from_grid(name: str, factor_names, images, factor_indices, values, note: str = "") -> FactorDataset:
    """A `FactorDataset` over images held in memory: every factor combination exactly once, in any order.

    Args:
      images: uint8 [N, H, W, C]; binary ones (0 and 255 only) are kept bit-packed (1 bit a pixel).
      factor_indices: int [N, F]; the sizes are max + 1, and N must be their product with no repeats.
      values: [N, F] the factors' values (one per index: the last seen is kept).
    """
    images = np.asarray(images)
    indices = np.asarray(factor_indices, np.int64)
    values = np.asarray(values, np.float64)
    if images.ndim != 4 or images.dtype != np.uint8 or indices.shape != values.shape or len(indices) != len(images):
        raise ValueError(f"images must be uint8 [N, H, W, C] with factor_indices and values [N, F]; got "
                         f"{images.dtype} {images.shape}, {indices.shape}, {values.shape}")
    sizes = tuple(int(k) for k in indices.max(0) + 1)
    position = np.ravel_multi_index(tuple(indices.T), sizes)
    if len(position) != math.prod(sizes) or len(np.unique(position)) != len(position):
        raise ValueError(f"images of {name} must hold every combination of factor indices once: {len(position)} "
                         f"images ({len(np.unique(position))} distinct) for sizes {sizes}")
    order = np.argsort(position)
    factor_values = []
    for f, size in enumerate(sizes):
        column = np.zeros(size)
        column[indices[:, f]] = values[:, f]
        factor_values.append(column)
    shape = images.shape[1:]
    binary = bool(np.isin(images, (0, 255)).all())
    stored = np.packbits(images[order].reshape(len(order), -1) > 0, axis=-1) if binary else images[order]
    lookup = functools.partial(_lookup, stored, sizes, shape, binary)
    return FactorDataset(name, tuple(factor_names), tuple(factor_values), shape, lookup, note)


def _lookup(stored: np.ndarray, sizes, shape, binary: bool, indices: np.ndarray) -> np.ndarray:
    """The images of factor indices [N, F] from a grid held in order (bit-packed when binary)."""
    rows = stored[np.ravel_multi_index(tuple(indices.T), sizes)]
    if not binary:
        return rows
    return np.unpackbits(rows, axis=-1, count=math.prod(shape)).reshape(-1, *shape) * np.uint8(255)


def load_tfds(name: str, data_dir: str | None = None) -> FactorDataset:
    """TFDS's real `dsprites` (737,280 images, held bit-packed: 0.4 GB) or `shapes3d` (480,000 RGB: 5.9 GB).

    TFDS downloads and prepares the dataset on first use (needs the internet); `data_dir` is TFDS's (None: its
    default). The factors are TFDS's labels and values.
    """
    factor_names = _check_tfds_name(name)
    from tfvae import data  # noqa: F401 - TFDS only after tfvae.data's protobuf shim; TensorFlow only here
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
    parts = [tfds_to_factors(name, batch) for batch in tfds.as_numpy(builder.as_dataset(split="train").batch(8192))]
    images, indices, values = (np.concatenate(p) for p in zip(*parts))
    return from_grid(name, factor_names, images, indices, values, f"TFDS {name}, the published images")


FACTOR_DATASETS: dict[str, Callable[..., FactorDataset]] = {
    "dsprites_procedural": dsprites_procedural,
    "dsprites_small": dsprites_small,
    "shapes_procedural": shapes_procedural,
    "shapes_small": shapes_small,
    "dsprites": functools.partial(load_tfds, "dsprites"),
    "shapes3d": functools.partial(load_tfds, "shapes3d"),
}


def is_factor_dataset(name: str) -> bool:
    """Whether `name` is a dataset with ground-truth factors (a key of FACTOR_DATASETS)."""
    return name in FACTOR_DATASETS


@functools.lru_cache(maxsize=2)
def _tfds_once(name: str, data_dir: str | None) -> FactorDataset:
    """`load_tfds`, read once per process: the train and test splits of a run (and its metrics) share it."""
    return load_tfds(name, data_dir)


def load_factor_dataset(name: str, data_dir: str | None = None) -> FactorDataset:
    """The factor dataset `name` from FACTOR_DATASETS (dsprites and shapes3d: TFDS, online the first time, read
    from `data_dir`, TFDS's own when None, once per process)."""
    if name not in FACTOR_DATASETS:
        raise ValueError(f"unknown factor dataset {name!r}; known: {', '.join(FACTOR_DATASETS)}")
    return _tfds_once(name, data_dir) if name in TFDS_FACTORS else FACTOR_DATASETS[name]()


# --------------------------------------------------------------------------- splits, to load by name as any dataset
TEST_SIZE = 2048  # images in the "test" split (at most the whole grid)
TEST_SEED = 0  # np.random.default_rng(TEST_SEED) draws them
VALIDATION_SEED = 1  # the fixed order of the grid that "train[:-N]" / "train[-N:]" cut (data.validation = N)
_VALIDATION_SPLIT = re.compile(r"train\[(:-(\d+)|-(\d+):)\]")


def split_factors(dataset: FactorDataset, split: str) -> np.ndarray:
    """The factor indices int64 [N, F] of split `split` of a factor dataset.

    "train": every combination once, in grid order (`fit` shuffles it). "test": TEST_SIZE combinations drawn
    without replacement by `default_rng(TEST_SEED)`, in the order drawn. These datasets have no held-out
    images (every combination is in the training split, as in the papers), so "test" numbers are on training
    images. With `data.validation` = K, "train[:-K]" and "train[-K:]" split a fixed permutation of the grid
    (`default_rng(VALIDATION_SEED)`) into the first N - K and the last K combinations, which do not overlap.
    """
    n = dataset.num_images
    if split == "train":
        return dataset.index_to_factors(np.arange(n))
    if split == "test":
        drawn = np.random.default_rng(TEST_SEED).choice(n, size=min(TEST_SIZE, n), replace=False)
        return dataset.index_to_factors(drawn)
    match = _VALIDATION_SPLIT.fullmatch(split)
    if not match:
        raise ValueError(f"split of {dataset.name} must be train, test, train[:-K] or train[-K:] (data.validation); "
                         f"got {split!r}")
    held_out = int(match.group(2) or match.group(3))
    if not 0 < held_out < n:
        raise ValueError(f"data.validation must lie in 1..{n - 1} for the {n} images of {dataset.name}; got {held_out}")
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    return dataset.index_to_factors(order[:-held_out] if match.group(2) else order[-held_out:])


def load_arrays(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`tfvae.data.load_arrays` for any name: a factor dataset's split (`split_factors`) as (uint8 images
    [N, H, W, C], labels int64 [N] all -1: no classes), any other name through `tfvae.data`."""
    from tfvae import data  # TensorFlow is loaded only here

    if not is_factor_dataset(name):
        return data.load_arrays(name, split, data_dir)
    dataset = load_factor_dataset(name, data_dir)
    images = dataset.images(split_factors(dataset, split))
    return images, np.full(len(images), -1, np.int64)


def load(name: str, split: str, batch_size: int, *, data_dir: str | None = None, with_labels: bool = False,
         **kwargs):
    """`tfvae.data.load` for any name: an `ArraySource` of the split `load_arrays` gives (kwargs: binarize,
    shuffle, seed, drop_remainder, prefetch, as `tfvae.data.from_arrays`)."""
    from tfvae import data

    if not is_factor_dataset(name):
        return data.load(name, split, batch_size, data_dir=data_dir, with_labels=with_labels, **kwargs)
    checks.positive_int(batch_size, "batch_size")
    images, labels = load_arrays(name, split, data_dir)
    return data.from_arrays(images, labels if with_labels else None, batch_size=batch_size, **kwargs)
