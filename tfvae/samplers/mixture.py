"""A Gaussian mixture fitted to the codes by EM (NumPy, float64), held as a `tfd.MixtureSameFamily`."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.special
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks
from tfvae.samplers.base import Sampler, check_temperature

tfd = tfp.distributions

_LOG_2PI = math.log(2 * math.pi)


class MixtureFit(NamedTuple):
    """A Gaussian mixture fitted by EM, float64: weights [K], means [K, d], covariances [K, d, d]."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    log_likelihood: float  # mean log p(code) over the fitted codes, nats
    iterations: int
    converged: bool


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centres [k, d] drawn from points [N, d] by k-means++ (Arthur & Vassilvitskii, 2007): each next
    centre a point drawn with probability proportional to its squared distance to the nearest centre so far."""
    centres = [points[rng.integers(len(points))]]
    nearest = np.sum((points - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres.append(points[index])
        nearest = np.minimum(nearest, np.sum((points - points[index]) ** 2, axis=1))
    return np.stack(centres)


def _component_log_densities(points: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """log N(x_n; mu_k, C_k) for every point [N, d] and component: [N, K], through each C_k's Cholesky factor."""
    dimension = points.shape[1]
    columns = []
    for mean, covariance in zip(means, covariances):
        factor = np.linalg.cholesky(covariance)
        whitened = scipy.linalg.solve_triangular(factor, (points - mean).T, lower=True)
        log_det = 2 * np.sum(np.log(np.diag(factor)))
        columns.append(-0.5 * (np.sum(whitened**2, axis=0) + log_det + dimension * _LOG_2PI))
    return np.stack(columns, axis=1)


def _maximisation(points: np.ndarray, responsibilities: np.ndarray, floor: float):
    """The M-step: weights [K], means [K, d], covariances [K, d, d] (+ floor * I) from responsibilities [N, K]."""
    counts = responsibilities.sum(axis=0) + 1e-12  # an empty component keeps finite (floor-sized) parameters
    means = responsibilities.T @ points / counts[:, None]
    covariances = np.stack([
        (responsibilities[:, k, None] * (points - means[k])).T @ (points - means[k]) / counts[k]
        for k in range(len(counts))
    ]) + floor * np.eye(points.shape[1])
    return counts / counts.sum(), means, covariances


def fit_gaussian_mixture(points, num_components: int, *, max_iterations: int = 200, tolerance: float = 1e-4,
                         covariance_floor: float = 1e-6, seed: int = 0) -> MixtureFit:
    """Full-covariance Gaussian mixture fitted to points [N, d] by EM (Dempster et al., 1977), in float64.

    Starts from a hard assignment to k-means++ centres (`kmeans_plus_plus`, NumPy's `default_rng(seed)`), then
    alternates E- and M-steps until the mean log-likelihood per point rises by less than `tolerance` nats
    (or `max_iterations`). `covariance_floor` (in squared code units) is added to every covariance's
    diagonal, so a component on a flat direction (an inactive latent dimension) keeps a density.

    Raises:
      ValueError: N < num_components, or settings that are not positive.
    """
    points = np.asarray(points, np.float64)
    num_components = checks.positive_int(num_components, "num_components")
    checks.positive_int(max_iterations, "max_iterations")
    checks.positive_number(covariance_floor, "covariance_floor")
    checks.non_negative_number(tolerance, "tolerance")
    if len(points) < num_components:
        raise ValueError(f"a mixture of {num_components} components needs at least {num_components} points; "
                         f"got {len(points)}")
    centres = kmeans_plus_plus(points, num_components, np.random.default_rng(seed))
    nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    weights, means, covariances = _maximisation(points, np.eye(num_components)[nearest], covariance_floor)
    previous, converged = -np.inf, False
    for iteration in range(1, max_iterations + 1):
        joint = _component_log_densities(points, means, covariances) + np.log(weights)
        log_likelihood = scipy.special.logsumexp(joint, axis=1, keepdims=True)
        weights, means, covariances = _maximisation(points, np.exp(joint - log_likelihood), covariance_floor)
        mean = float(log_likelihood.mean())
        if mean - previous < tolerance:
            converged = True
            break
        previous = mean
    joint = _component_log_densities(points, means, covariances) + np.log(weights)
    final = float(scipy.special.logsumexp(joint, axis=1).mean())
    return MixtureFit(weights, means, covariances, final, iteration, converged)


class GaussianMixtureSampler(Sampler):
    """K full-covariance Gaussians fitted to the codes by EM (`fit_gaussian_mixture`); a `tfd.MixtureSameFamily`.

    Variables (float32): `logits` [K] (log weights), `loc` [K, latent], `scale_tril` [K, latent, latent] (each
    covariance's Cholesky factor); before `fit`, K copies of N(0, I).

    Args:
      latent_size: d, the codes' size.
      num_components: K (Ghosh et al. use 10 on MNIST).
      max_iterations, tolerance, covariance_floor, seed: of `fit_gaussian_mixture`.
    """

    kind = "gmm"

    def __init__(self, latent_size: int, num_components: int = 10, *, max_iterations: int = 200,
                 tolerance: float = 1e-4, covariance_floor: float = 1e-6, seed: int = 0, name: str = "gmm_sampler"):
        super().__init__(latent_size, seed, name)
        self.num_components = checks.positive_int(num_components, "num_components")
        self.min_codes = self.num_components
        self.max_iterations = checks.positive_int(max_iterations, "max_iterations")
        self.tolerance = checks.non_negative_number(tolerance, "tolerance")
        self.covariance_floor = checks.positive_number(covariance_floor, "covariance_floor")
        k, d = self.num_components, self.latent_size
        self.logits = tf.Variable(tf.zeros([k]), trainable=False, name="logits")
        self.loc = tf.Variable(tf.zeros([k, d]), trainable=False, name="loc")
        self.scale_tril = tf.Variable(tf.eye(d, batch_shape=[k]), trainable=False, name="scale_tril")

    def options(self) -> dict:
        return {"num_components": self.num_components, "max_iterations": self.max_iterations,
                "tolerance": self.tolerance, "covariance_floor": self.covariance_floor, **super().options()}

    def _fit(self, codes: np.ndarray) -> dict:
        fit = fit_gaussian_mixture(codes, self.num_components, max_iterations=self.max_iterations,
                                   tolerance=self.tolerance, covariance_floor=self.covariance_floor, seed=self.seed)
        self.logits.assign(np.log(fit.weights).astype(np.float32))
        self.loc.assign(fit.means.astype(np.float32))
        self.scale_tril.assign(np.linalg.cholesky(fit.covariances).astype(np.float32))
        return {"mean_log_likelihood": fit.log_likelihood, "iterations": fit.iterations, "converged": fit.converged}

    def distribution(self, temperature=1.0) -> tfd.MixtureSameFamily:
        """sum_k w_k N(loc_k, T^2 L_k L_k^T): batch [], event [latent]."""
        if not tf.is_tensor(temperature):
            check_temperature(temperature)
        components = tfd.MultivariateNormalTriL(self.loc, self.scale_tril * temperature)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=self.logits), components)
