"""How close a set of generated images is to real ones: a Frechet distance, precision and recall, in features.

The Frechet distance between two image sets is the 2-Wasserstein distance between the Gaussians fitted to
their features (Heusel et al., 2017, eq. 6; Dowson & Landau, 1982):

    d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))

In the features of tfvae's own small classifier (`tfvae.features`, committed per dataset) it is the
**classifier Frechet distance**: it works offline and on 28x28 grey images, but its values are comparable
only with other values of the same classifier and dataset, never with published FIDs (those use Inception-v3
features: `tfvae.inception`). Like FID it is biased upwards at small N (the sample covariance's noise adds a
term of order D/N), so compare distances measured with the same N.

Precision and recall (Kynkaanniemi et al., 2019, "Improved precision and recall metric for assessing
generative models", sec. 2): each set's manifold is the union of balls around its points whose radius is the
distance to the point's k-th nearest neighbour in the same set. Precision is the fraction of generated points
inside the real manifold (are the samples realistic?), recall the fraction of real points inside the generated
manifold (do the samples cover the data?).

    fd = classifier_frechet_distance(generated_images, test_images, dataset="mnist")
    real, fake = (features.classifier_features(x, "mnist") for x in (test_images, generated_images))
    precision, recall = precision_recall(real, fake, k=3)

References:
    Heusel et al. (2017), "GANs trained by a two time-scale update rule converge to a local Nash equilibrium".
    Dowson & Landau (1982), "The Frechet distance between multivariate normal distributions".
    Kynkaanniemi et al. (2019), "Improved precision and recall metric for assessing generative models".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfvae import checks, features

__all__ = [
    "FeatureStatistics",
    "PrecisionRecall",
    "classifier_frechet_distance",
    "feature_statistics",
    "frechet_distance",
    "precision_recall",
]

# A covariance's eigenvalue below -_PSD_TOLERANCE * (its largest) is a real negative direction, not rounding:
# eigh of a float64 PSD matrix is accurate to about D * 1e-16 of the largest eigenvalue.
_PSD_TOLERANCE = 1e-9


class FeatureStatistics(NamedTuple):
    """The Gaussian fitted to N feature vectors: mean float64 [D], covariance float64 [D, D] (divided by N - 1)."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int


class PrecisionRecall(NamedTuple):
    """Fractions in [0, 1]: generated points inside the real manifold, real points inside the generated one."""

    precision: float
    recall: float


def _features_matrix(values, name: str) -> np.ndarray:
    """A finite float64 [N, D] array, or a one-line ValueError naming `name`."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] array of feature vectors, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN or infinite values")
    return array


def feature_statistics(features_: np.ndarray) -> FeatureStatistics:
    """Mean and covariance of feature vectors [N, D], in float64.

    Raises:
        ValueError: N <= D: N points span at most N - 1 dimensions, so the covariance would be singular for
            lack of samples (needs N >= D + 1); or not [N, D]; or non-finite values.
    """
    array = _features_matrix(features_, "features")
    count, dimension = array.shape
    if count <= dimension:
        raise ValueError(f"{count} feature vectors of dimension {dimension} give a singular covariance: "
                         f"use at least N = {dimension + 1} images (N - 1 >= D)")
    return FeatureStatistics(array.mean(axis=0), np.cov(array, rowvar=False), count)


def _gaussian(mean, covariance, name: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean [D] and symmetric covariance [D, D], or a one-line ValueError naming the argument."""
    mean, covariance = np.asarray(mean, np.float64), np.asarray(covariance, np.float64)
    if mean.ndim != 1 or covariance.shape != (mean.size, mean.size):
        raise ValueError(f"{name}: the mean must be [D] and the covariance [D, D], got {list(mean.shape)} "
                         f"and {list(covariance.shape)}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(covariance))):
        raise ValueError(f"{name}: the mean or covariance has NaN or infinite values")
    scale = max(float(np.abs(covariance).max()), np.finfo(np.float64).tiny)
    if np.abs(covariance - covariance.T).max() > 1e-8 * scale:
        raise ValueError(f"{name}: the covariance is not symmetric")
    return mean, (covariance + covariance.T) / 2


def _psd_square_root(covariance: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """The symmetric square root of a PSD matrix [D, D] and its trace (eigenvalues clipped at 0).

    Raises:
        ValueError: an eigenvalue below -_PSD_TOLERANCE times the largest (not a covariance).
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    largest = max(float(np.abs(eigenvalues).max()), np.finfo(np.float64).tiny)
    if eigenvalues.min() < -_PSD_TOLERANCE * largest:
        raise ValueError(f"{name}: the covariance is not positive semi-definite (eigenvalue {eigenvalues.min():.3g})")
    eigenvalues = np.clip(eigenvalues, 0, None)
    return (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T, float(eigenvalues.sum())


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """The Frechet (2-Wasserstein) distance d^2 between N(mu1, cov1) and N(mu2, cov2), in float64.

    tr((C1 C2)^(1/2)) is computed without a non-symmetric matrix square root: C1 C2 is similar to the PSD
    matrix C1^(1/2) C2 C1^(1/2) = A^T A with A = C2^(1/2) C1^(1/2), so the trace is the sum of A's singular
    values. The symmetric roots come from `eigh` (eigenvalues clipped at 0, after a check that none is
    meaningfully negative), so no complex numbers arise, where scipy.linalg.sqrtm(C1 @ C2), as FID code does
    it, can return an imaginary part to discard; singular covariances (dead ReLU features) are fine. For
    identical inputs the result is 0 to about D^2.5 * 1e-16 of the largest eigenvalue.

    Args:
        mu1, mu2: means [D].
        cov1, cov2: covariances [D, D], symmetric positive semi-definite.

    Returns:
        d^2 >= 0, in squared feature units (the quantity FID reports).

    Raises:
        ValueError: mismatched shapes, non-finite values, or a covariance that is not symmetric PSD.
    """
    mu1, cov1 = _gaussian(mu1, cov1, "mu1/cov1")
    mu2, cov2 = _gaussian(mu2, cov2, "mu2/cov2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two Gaussians have different dimensions: {mu1.size} and {mu2.size}")
    root1, trace1 = _psd_square_root(cov1, "cov1")
    root2, trace2 = _psd_square_root(cov2, "cov2")
    trace_root_product = float(np.linalg.svd(root2 @ root1, compute_uv=False).sum())
    distance = float(np.sum((mu1 - mu2) ** 2)) + trace1 + trace2 - 2 * trace_root_product
    return max(distance, 0.0)  # a squared distance; only rounding (~1e-13 of the traces) makes it negative


def classifier_frechet_distance(images_a, images_b, *, dataset: str, batch_size: int = 1000) -> float:
    """The Frechet distance between two image sets in the features of a dataset's committed classifier.

    Args:
        images_a, images_b: [N, H, W, C] (the classifier's H, W, C; e.g. 28x28x1), uint8 or floats in [0, 1];
            each N >= feature size + 1 (129). Compare distances made with the same N (the estimate is biased
            upwards by about D/N).
        dataset: the images' dataset, which has committed classifier weights (`tfvae.features.known_datasets()`:
            "mnist", "fashion_mnist"), or an .npz path written by `tfvae.features.save_classifier`. Required:
            Fashion-MNIST images fit MNIST's classifier too, and would be scored in the wrong features.
        batch_size: images per classifier call.

    Returns:
        d^2 in squared feature units; 0 for identical sets.

    Raises:
        ValueError: an unknown dataset (naming the known ones and the training script), images of the wrong
            shape or range, or too few images.
    """
    classifier = features.load_classifier(dataset)
    statistics = []
    for images, name in ((images_a, "images_a"), (images_b, "images_b")):
        pixels = features.as_unit_floats(images, classifier.input_shape, name)
        if len(pixels) <= classifier.feature_size:
            raise ValueError(f"{name} has {len(pixels)} images; the {classifier.feature_size}-d classifier features "
                             f"need at least N = {classifier.feature_size + 1} for a non-singular covariance")
        statistics.append(feature_statistics(features.classifier_features(pixels, classifier, batch_size)))
    (mu1, cov1, _), (mu2, cov2, _) = statistics
    return frechet_distance(mu1, cov1, mu2, cov2)


# --------------------------------------------------------------------------- precision and recall
def _squared_distances(queries: np.ndarray, points: np.ndarray, point_norms: np.ndarray) -> np.ndarray:
    """|q - p|^2 for every pair: float64 [len(queries), len(points)], clipped at 0 against rounding."""
    products = queries @ points.T
    return np.maximum(np.sum(queries**2, axis=1)[:, None] + point_norms[None, :] - 2 * products, 0.0)


def _kth_neighbour_radii(points: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Squared distance of each point [N, D] to its k-th nearest other point: float64 [N]."""
    norms = np.sum(points**2, axis=1)
    radii = []
    for first in range(0, len(points), batch_size):
        distances = _squared_distances(points[first:first + batch_size], points, norms)
        radii.append(np.partition(distances, k, axis=1)[:, k])  # position 0 is the point itself
    return np.concatenate(radii)


def _inside_fraction(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, batch_size: int) -> float:
    """The fraction of queries within the (squared) radius of at least one centre."""
    norms, inside = np.sum(centres**2, axis=1), 0
    for first in range(0, len(queries), batch_size):
        distances = _squared_distances(queries[first:first + batch_size], centres, norms)
        inside += int(np.count_nonzero(np.any(distances <= radii[None, :], axis=1)))
    return inside / len(queries)


def precision_recall(real_features, fake_features, k: int = 3, batch_size: int = 500) -> PrecisionRecall:
    """Precision and recall of generated samples (Kynkaanniemi et al., 2019) in a feature space.

    A point is inside a set's manifold when it is within the k-th-nearest-neighbour distance of at least one
    of the set's points. Memory is batch_size x N float64 at a time (40 MB for N = 10,000).

    Args:
        real_features: [N_real, D] features of real images (e.g. `tfvae.features.classifier_features`).
        fake_features: [N_fake, D] features of generated images; both N > k.
        k: the neighbour whose distance is the radius (the paper uses 3).
        batch_size: query rows per distance block.

    Returns:
        PrecisionRecall(precision, recall): identical sets give (1, 1), far-apart sets (0, 0).
    """
    k = checks.positive_int(k, "k")
    batch_size = checks.positive_int(batch_size, "batch_size")
    real, fake = _features_matrix(real_features, "real_features"), _features_matrix(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features have different dimensions: {real.shape[1]} and {fake.shape[1]}")
    for array, name in ((real, "real_features"), (fake, "fake_features")):
        if len(array) <= k:
            raise ValueError(f"{name} has {len(array)} points; the k-th neighbour radius needs more than k = {k}")
    real_radii = _kth_neighbour_radii(real, k, batch_size)
    fake_radii = _kth_neighbour_radii(fake, k, batch_size)
    return PrecisionRecall(precision=_inside_fraction(fake, real, real_radii, batch_size),
                           recall=_inside_fraction(real, fake, fake_radii, batch_size))
