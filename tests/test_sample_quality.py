"""The classifier Frechet distance, precision and recall, the committed feature classifiers, and FID's offline path.

Real MNIST (1,000 test and 1,000 train images from the offline copy) where a property is about images; exact
cases (closed forms, constructed clusters) where it is about the arithmetic.
"""

import json
import time

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
from scipy.spatial.distance import cdist

import tfvae
from tfvae import data, features, inception
from tfvae.sample_quality import (classifier_frechet_distance, feature_statistics, frechet_distance,
                                  precision_recall)

N = 1000


@pytest.fixture(scope="module")
def mnist():
    """1,000 MNIST test images with labels, and 1,000 train images: uint8 [1000, 28, 28, 1]."""
    test_images, test_labels = data.load_arrays("mnist", "test")
    train_images, _ = data.load_arrays("mnist", "train")
    return test_images[:N], test_labels[:N], train_images[:N]


def stand_in_for_prior_samples(test_images, labels, seed=0):
    """Images clearly worse than real ones, as a VAE's prior samples are: each image its class's mean image,
    blurred (sigma 1 pixel), plus Gaussian noise (std 0.1), clipped to [0, 1]."""
    pixels = test_images.astype(np.float64) / 255
    means = np.stack([pixels[labels == label].mean(axis=0) for label in range(10)])
    blurred = scipy.ndimage.gaussian_filter(means, sigma=(0, 1, 1, 0))
    noise = np.random.default_rng(seed).normal(0, 0.1, pixels.shape)
    return np.clip(blurred[labels] + noise, 0, 1).astype(np.float32)


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- frechet_distance: exact cases
def test_identical_gaussians_are_at_distance_zero_to_rounding():
    # For identical inputs d = 2 sum(l+) - 2 sum sigma(S S) with S = V diag(sqrt l+) V^T, so S S = V diag(l+) V^T
    # up to rounding of order D * 1e-16 * l_max per entry: the singular values move by at most D^1.5 * 1e-16
    # * l_max, their sum by D^2.5 * 1e-16 * l_max, about 4e-11 of tr C for D = 128. 1e-6 leaves a wide margin,
    # including for a rank-deficient covariance (dead ReLU features, as here).
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 128)) * rng.uniform(0, 3, 128)
    points[:, :20] = 0  # dead features: a singular covariance
    mean, covariance, _ = feature_statistics(points)
    assert 0 <= frechet_distance(mean, covariance, mean, covariance) <= 1e-6 * 2 * np.trace(covariance)


def test_diagonal_gaussians_match_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    s1, s2 = rng.uniform(0.1, 4, 16), rng.uniform(0.1, 4, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))  # the same rotation of both: the same distance
    rotated = [rotation @ np.diag(s) @ rotation.T for s in (s1, s2)]
    assert frechet_distance(rotation @ mu1, rotated[0], rotation @ mu2, rotated[1]) == pytest.approx(expected,
                                                                                                       rel=1e-9)


def test_general_gaussians_match_a_matrix_square_root_of_the_product():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 12, 12))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(12), b @ b.T + 0.1 * np.eye(12)
    mu1, mu2 = rng.normal(size=(2, 12))
    root = scipy.linalg.sqrtm(cov1 @ cov2)  # the textbook formula, an independent computation
    assert np.abs(root.imag).max() < 1e-6 * np.abs(root.real).max()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root.real)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(expected, rel=1e-9)  # symmetric


# --------------------------------------------------------------------------- the classifier distance on MNIST
def test_identical_image_sets_are_at_distance_zero(mnist):
    test_images, _, train_images = mnist
    scale = classifier_frechet_distance(train_images, test_images, dataset="mnist")
    same = classifier_frechet_distance(test_images, test_images.astype(np.float32) / 255, dataset="mnist")
    assert 0 <= same <= 1e-6 * scale


def test_the_distance_grows_with_noise_and_with_blur(mnist):
    test_images, _, train_images = mnist
    reference = feature_statistics(features.classifier_features(train_images, "mnist"))

    def distance(images):  # classifier_frechet_distance(train_images, images), the train features computed once
        mean, covariance, _ = feature_statistics(features.classifier_features(images, "mnist"))
        return frechet_distance(reference.mean, reference.covariance, mean, covariance)

    pixels = test_images.astype(np.float32) / 255
    rng = np.random.default_rng(0)
    noisy = [np.clip(pixels + rng.normal(0, std, pixels.shape), 0, 1).astype(np.float32)
             for std in (0.1, 0.2, 0.3, 0.5)]
    blurred = [scipy.ndimage.gaussian_filter(pixels, sigma=(0, sigma, sigma, 0)) for sigma in (0.5, 1, 1.5, 2)]
    clean = distance(pixels)
    assert clean == pytest.approx(classifier_frechet_distance(train_images, test_images, dataset="mnist"), rel=1e-9)
    for corrupted in (noisy, blurred):
        distances = [clean] + [distance(images) for images in corrupted]
        assert np.all(np.diff(distances) > 0), distances


def test_train_against_test_scores_below_5_percent_of_a_stand_in_for_prior_samples(mnist):
    test_images, labels, train_images = mnist
    real = classifier_frechet_distance(train_images, test_images, dataset="mnist")
    worse = classifier_frechet_distance(stand_in_for_prior_samples(test_images, labels), test_images, dataset="mnist")
    assert real < 0.05 * worse, (real, worse)


# --------------------------------------------------------------------------- precision and recall
def clusters(centres, per_cluster, seed):
    """per_cluster standard Normal points around each centre [M, D]: [M * per_cluster, D]."""
    rng = np.random.default_rng(seed)
    return np.concatenate([centre + rng.normal(size=(per_cluster, centres.shape[1])) for centre in centres])


def test_identical_sets_have_precision_and_recall_one():
    points = np.random.default_rng(0).normal(size=(500, 8))
    assert precision_recall(points, points.copy(), k=3) == (1.0, 1.0)


def test_far_apart_sets_have_precision_and_recall_zero():
    rng = np.random.default_rng(0)
    assert precision_recall(rng.normal(size=(300, 8)), 100 + rng.normal(size=(300, 8))) == (0.0, 0.0)


def test_samples_covering_half_of_the_modes_have_recall_one_half():
    # 10 modes in 2-D, at least 16 standard deviations apart. In 2-D the k-NN balls of 200 points cover their
    # mode almost entirely (a fresh sample of all 10 modes scores about 0.97 both ways); in 16-D the same
    # construction scores 0.8, the metric's known underestimate in high dimension.
    centres = 50 * np.random.default_rng(0).normal(size=(10, 2))
    real = clusters(centres, 200, seed=1)
    precision, recall = precision_recall(real, clusters(centres[:5], 400, seed=2), k=3)  # as many, from 5 modes
    full = precision_recall(real, clusters(centres, 200, seed=3), k=3)
    assert min(full) > 0.9
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.05) and recall / full.recall == pytest.approx(
        0.5, abs=0.03)


def test_precision_recall_follow_the_definition_in_any_batch_size():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.5, 1.2, size=(45, 5))
    k = 3

    def inside(queries, centres):  # brute force: within the k-th neighbour distance of some centre
        radii = np.sort(cdist(centres, centres), axis=1)[:, k]
        return np.mean(np.any(cdist(queries, centres) <= radii[None, :], axis=1))

    expected = (inside(fake, real), inside(real, fake))
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    for batch_size in (1, 7, 500):
        assert precision_recall(real, fake, k=k, batch_size=batch_size) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- the committed classifiers
@pytest.mark.parametrize("dataset, target", [("mnist", 0.99), ("fashion_mnist", 0.90)])
def test_committed_weights_are_small_and_reproduce_their_stated_accuracy(dataset, target):
    stated = features.stated_results(dataset)
    assert stated["dataset"] == dataset and stated["test_accuracy"] >= target
    assert (features.WEIGHTS_DIR / f"{dataset}.npz").stat().st_size < 1_000_000
    with np.load(features.WEIGHTS_DIR / f"{dataset}.npz", allow_pickle=False) as stored:  # plain arrays only
        assert all(stored[key].dtype != object for key in stored.files)
    images, labels = data.load_arrays(dataset, "test")
    classifier = features.load_classifier(dataset)
    assert features.parameter_count(classifier) == stated["parameters"]
    assert features.accuracy(classifier, images[:N], labels[:N]) == pytest.approx(stated["test_accuracy"], abs=0.01)


def test_the_classifier_takes_its_shapes_from_the_data_and_round_trips_through_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 64, 64, 1), dtype=np.uint8)  # dSprites-sized, 3 classes
    classifier = features.train_classifier(images, rng.integers(0, 3, 64), epochs=1, batch_size=32, log=None)
    assert classifier.input_shape == (64, 64, 1) and classifier.num_classes == 3
    path = features.save_classifier(classifier, tmp_path / "dsprites.npz")
    restored = features.load_classifier(path)
    np.testing.assert_array_equal(features.classifier_features(images, restored),
                                  features.classifier_features(images, classifier))
    assert features.classifier_features(images, restored).shape == (64, 128)


# --------------------------------------------------------------------------- bad input: one line each
def test_too_few_images_say_the_minimum_n(mnist):
    test_images, _, _ = mnist
    with pytest.raises(ValueError, match="at least N = 129") as error:
        classifier_frechet_distance(test_images[:100], test_images, dataset="mnist")
    one_line(error)
    with pytest.raises(ValueError, match="at least N = 129") as error:
        feature_statistics(np.zeros((128, 128)))
    one_line(error)


def test_a_dataset_without_a_classifier_names_the_known_ones_and_the_script(mnist):
    test_images, _, _ = mnist
    with pytest.raises(ValueError) as error:
        classifier_frechet_distance(test_images, test_images, dataset="cifar10")
    message = one_line(error)
    assert "fashion_mnist, mnist" in message and features.TRAIN_SCRIPT in message and "cifar10" in message


@pytest.mark.parametrize("images, expected", [
    (np.zeros((200, 28, 28), np.uint8), r"shape \[N, 28, 28, 1\], got \[200, 28, 28\]"),
    (np.zeros((200, 32, 32, 3), np.uint8), r"shape \[N, 28, 28, 1\], got \[200, 32, 32, 3\]"),
    (np.full((200, 28, 28, 1), 255.0), r"floats in \[0, 1\]"),
    (np.zeros((200, 28, 28, 1), np.int32), "uint8"),
])
def test_images_of_the_wrong_shape_or_range_are_refused(mnist, images, expected):
    with pytest.raises(ValueError, match=expected) as error:
        classifier_frechet_distance(images, mnist[0], dataset="mnist")
    one_line(error)


def test_bad_gaussians_are_refused():
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="more than k = 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# --------------------------------------------------------------------------- FID proper, offline
def test_offline_fid_fails_within_seconds_in_one_line(monkeypatch):
    monkeypatch.setattr(inception, "_cached_weights", lambda: None)
    monkeypatch.setattr(inception, "WEIGHTS_URL", "https://127.0.0.1:9/" + inception.WEIGHTS_FILE)  # a closed port
    images = np.zeros((inception.FEATURE_SIZE + 1, 28, 28, 1), np.uint8)
    start = time.perf_counter()
    with pytest.raises(inception.InceptionUnavailableError, match="127.0.0.1:9 is unreachable") as error:
        inception.frechet_inception_distance(images, images)
    assert time.perf_counter() - start < 10
    assert "weights=" in one_line(error)


def test_fid_here_is_skipped_with_a_reason_or_available():
    start = time.perf_counter()
    reason = inception.unavailable_reason()  # this machine has no internet: a reason, within seconds
    assert time.perf_counter() - start < 10
    assert reason is None or ("\n" not in reason and "Inception-v3" in reason)


def test_a_bad_weights_file_is_one_line(tmp_path):
    with pytest.raises(inception.InceptionUnavailableError, match="no Inception-v3 weights file") as error:
        inception.load_inception(tmp_path / "missing.h5")
    one_line(error)
    (tmp_path / "broken.h5").write_text("not an HDF5 file")
    with pytest.raises(inception.InceptionUnavailableError, match="Keras could not load") as error:
        inception.load_inception(tmp_path / "broken.h5")
    one_line(error)


@pytest.mark.slow
def test_inception_features_from_a_weights_file(tmp_path):
    import keras

    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg")
    model.save_weights(tmp_path / "random.weights.h5")  # random weights: the pipeline, not the numbers
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert inception.inception_features(images, weights=tmp_path / "random.weights.h5").shape == (3, 2048)


@pytest.mark.slow
def test_the_wheel_carries_the_classifier_weights(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = features.WEIGHTS_DIR.parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path, root],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("tfvae-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for dataset in features.known_datasets():
        assert {f"tfvae/feature_weights/{dataset}.npz", f"tfvae/feature_weights/{dataset}.json"} <= names


def test_the_public_names():
    assert tfvae.classifier_frechet_distance is classifier_frechet_distance
    assert tfvae.precision_recall is precision_recall
    assert tfvae.frechet_inception_distance is inception.frechet_inception_distance
    assert json.loads((features.WEIGHTS_DIR / "mnist.json").read_text())["feature_size"] == 128
