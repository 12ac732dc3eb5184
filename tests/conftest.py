"""Shared test fixtures: tiny IDX files that stand in for MNIST, one tiny trained run directory, and one
TensorFlow seed for every test."""

import gzip
import shutil
import struct
import sys

import numpy as np
import pytest

from tfvae import data

N_TRAIN, N_TEST = 20, 10


def write_idx(path, array, compress):
    """Writes a uint8 array as an IDX file (gzip when compress)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if compress else path
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_fixture(data_dir, name, compress, seed, n_train=N_TRAIN, n_test=N_TEST):
    """Random IDX files in <data_dir>/downloads/manual/<name>; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder = data.manual_dir(name, data_dir)
    folder.mkdir(parents=True)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[split] = (images, labels)
    return arrays


# setup.cfg runs the suite on two pytest-xdist workers with --dist loadscope: each module runs whole on one worker
# (its module fixtures built once), and a worker that is free takes the next module in collection order. Longest
# first, so that no worker is left with a long module while the other has finished: these modules, in this order
# (the longest here, by the sums of `--durations=0`; about 2.5 minutes for the first, 20 s for the last), then the
# rest in file order. An out-of-date list changes only how evenly the two workers share the time.
LONGEST_FIRST = ["test_reliability.py", "test_train.py", "test_notebooks.py", "test_distribute.py",
                 "test_families.py", "test_user_errors.py", "test_conditional.py", "test_evaluate.py",
                 "test_family_runs.py", "test_samplers.py", "test_custom_model.py", "test_protocol.py", "test_disentangling.py", "test_plots.py", "test_cli.py", "test_sweep.py",
                 "test_loglik_benchmark.py", "test_precision.py", "test_flows.py", "test_export.py", "test_docs.py"]  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a module


@pytest.fixture(autouse=True)
def seeded_tensorflow():
    """TensorFlow's global seed set to 0 before every test.

    pytest-xdist hands each worker a different run of tests each time, so
    without this a test's random initial weights depend on what ran before it
    on its worker, and a check that holds for most weights (a ReLU layer that is
    not dead for every input) fails on one CI run in twenty. A test that seeds
    itself still does; this only fixes the start.
    """
    tensorflow = sys.modules.get("tensorflow")  # loaded by the test modules; not imported here for tests that avoid it
    if tensorflow is not None:
        tensorflow.random.set_seed(0)


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """A TFDS data_dir whose offline MNIST and Fashion-MNIST each hold 200 train and 40 test random images."""
    data_dir = tmp_path_factory.mktemp("tfds_mnist")
    make_fixture(data_dir, "mnist", compress=False, seed=3, n_train=200, n_test=40)
    make_fixture(data_dir, "fashion_mnist", compress=True, seed=4, n_train=200, n_test=40)
    return str(data_dir)


# The tiny run that the modules needing only a trained run directory share (test_cli, test_plots, test_export,
# test_evaluate): `tfvae train` with these arguments and the data of `mnist_data_dir`. Three latent dimensions
# so that `tfvae plot` draws the figures of a latent space of more than two (traversals, dimensions chosen by KL);
# a dynamically binarized training set, so that evaluate scores the fixed binarized test set; progress GIFs; the
# figures and TensorBoard events of a default run. 200 images in batches of 32: 7 steps an epoch, rows at steps
# 2 4 6 7 8 10 12 14.
TINY_RUN_ARGUMENTS = ["--preset", "tiny", "--latent-size", "3", "--epochs", "2", "--set", "train.log_every=2",
                      "--set", "data.binarize=dynamic", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="session")
def shared_tiny_run(mnist_data_dir, tmp_path_factory):
    """The run of TINY_RUN_ARGUMENTS, trained once per test process (each pytest-xdist worker that needs it).
    Read it through `tiny_run`, which copies it: tests may change their copy."""
    from tfvae import cli

    run_dir = tmp_path_factory.mktemp("shared_run") / "tiny"
    assert cli.main(["train", *TINY_RUN_ARGUMENTS, "--progress-gifs", "--data-dir", mnist_data_dir,
                     "--run-dir", str(run_dir)]) == 0  # fmt: skip
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(shared_tiny_run, tmp_path_factory):
    """A copy of the shared tiny run for one test module (milliseconds; training one takes seconds)."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "tiny"
    shutil.copytree(shared_tiny_run, run_dir)
    return run_dir
