"""Samplers fitted after training: distributions over the latent code that stand in for the prior when drawing.

A trained VAE's aggregate posterior q(z) = E_x q(z|x) does not fill its prior: N(0, I) puts mass where no
training image's code lies, and the decoder turns those codes into blurred mixtures of digits. A density fitted
to the training set's codes after training draws z where the decoder was trained (Dai & Wipf, 2019; Ghosh et
al., 2020, "ex-post density estimation"). Every sampler here is fitted to posterior means [N, latent] and gives

    sampler.fit(codes)                       codes float [N, latent] -> a dict of what the fit did (JSON-ready)
    sampler.sample(n, seed, temperature)     -> z float32 [n, latent]   (seed: a stateless [2] int seed, or None)
    sampler.log_prob(z)                      z [n, latent] -> float32 [n], nats (two-stage: a lower bound)

so `vae.sample(n, sampler=...)` (and `tfvae.protocol.sample`) decode its draws instead of the prior's. Kinds:

- "prior" (`PriorSampler`): the model's own p(z), nothing fitted (the baseline).
- "gmm" (`GaussianMixtureSampler`): K full-covariance Gaussians fitted by EM in NumPy float64 (a k-means++
  start with a fixed seed), held as a `tfd.MixtureSameFamily` of `tfd.MultivariateNormalTriL`.
- "two-stage" (`TwoStageSampler`): a second small VAE on the codes (Dai & Wipf, 2019): q(u|z) a diagonal
  Normal, p(z|u) = N(mu(u), gamma^2 I) with a learned gamma, p(u) = N(0, I), u of the codes' size; a draw is
  mu(u) for u ~ p(u). Trained for a fixed number of Adam steps on the negative ELBO.
- "flow" (`FlowSampler`): a masked autoregressive flow (Papamakarios et al., 2017) from `tfp.bijectors`, a
  few `tfb.MaskedAutoregressiveFlow` steps with reversals between them over N(0, I), trained by maximum
  likelihood for a fixed number of Adam steps.

The two-stage and flow samplers see the codes standardised (each dimension's mean and standard deviation over
the fitted codes, kept as variables), so their networks work on unit-scale inputs whatever the encoder's units.

Temperature T > 0 scales the standard deviation of each sampler's Gaussian source: the prior's scale (a
Normal or a mixture of Normals), each mixture component's covariance by T^2, the flow's base N(0, T^2 I), the
two-stage VAE's p(u) = N(0, T^2 I). T = 1 is the fitted density; T < 1 trades variety for typical samples
(Kingma & Dhariwal, 2018). `with_temperature(sampler, T)` is a sampler that always draws at T.

`save(sampler, directory)` writes sampler.json (kind, latent size, options, the fit's record) and a TensorFlow
checkpoint (weights.*) and `load(directory)` reads them back: data formats only. A run keeps its fitted
samplers in RUN_DIR/samplers/KIND (`run_path`; `tfvae.run_samplers` fits and reuses them).

Limits: the fitted samplers see only the codes, so a conditional model's label is not part of what they fit;
"two-stage" and "flow" need N >= 2 codes, "gmm" N >= K; the fits take seconds to a minute for 60,000 20-d codes
on two CPU cores.

References:
    Dai & Wipf (2019), "Diagnosing and enhancing VAE models", ICLR.
    Ghosh et al. (2020), "From variational to deterministic autoencoders", ICLR (a GMM on the codes, sec. 4).
    Papamakarios, Pavlakou & Murray (2017), "Masked autoregressive flow for density estimation", NeurIPS.
    Germain et al. (2015), "MADE: masked autoencoder for distribution estimation", ICML.
    Arthur & Vassilvitskii (2007), "k-means++: the advantages of careful seeding".
    Kingma & Dhariwal (2018), "Glow" (sampling at a reduced temperature).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.special
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, flows, optimizers

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "FITTED",
    "KINDS",
    "FlowSampler",
    "GaussianMixtureSampler",
    "MixtureFit",
    "PriorSampler",
    "Sampler",
    "TwoStageSampler",
    "build",
    "check_temperature",
    "fit_gaussian_mixture",
    "load",
    "run_path",
    "save",
    "tempered",
    "with_temperature",
]

KINDS = ("prior", "gmm", "two-stage", "flow")
FITTED = KINDS[1:]  # the kinds fitted to codes (and saved); "prior" is the model's own
RUN_SUBDIR = "samplers"
_SPEC_FILE, _WEIGHTS = "sampler.json", "weights"
_LOG_2PI = math.log(2 * math.pi)


def check_temperature(temperature) -> float:
    """`temperature` as a float, or one ValueError line: it must be a finite number > 0."""
    if not checks.is_positive_number(temperature):
        raise ValueError(f"temperature must be a number > 0 (it scales the sampler's standard deviation; 1 draws "
                         f"from the fitted density), got {temperature!r}")
    return float(temperature)


def _normal(shape, seed: tf.Tensor | None) -> tf.Tensor:
    """N(0, 1) draws float32 of `shape`: stateless (Philox) with a [2] seed, from TF's global generator without."""
    if seed is None:
        return tf.random.normal(shape)
    return tf.random.stateless_normal(shape, seed=tf.cast(seed, tf.int32), alg="philox")


class _SeededInit(snt.initializers.Initializer):
    """Sonnet Linear's default weights (truncated normal, stddev 1/sqrt(fan_in)) drawn statelessly: the k-th
    variable made with it uses the seed (seed, k), so a sampler built with the same seed starts the same."""

    def __init__(self, seed: int):
        self._seed, self._count = int(seed), 0

    def __call__(self, shape, dtype) -> tf.Tensor:
        self._count += 1
        stddev = 1.0 / math.sqrt(shape[0]) if len(shape) else 1.0
        return tf.random.stateless_truncated_normal(shape, seed=[self._seed, self._count], stddev=stddev, dtype=dtype)


# --------------------------------------------------------------------------- tempering a prior
def tempered(distribution: tfd.Distribution, temperature) -> tfd.Distribution:
    """`distribution` with its standard deviations scaled by `temperature` (its locations kept).

    A Normal (or an `Independent` over one), a `MultivariateNormalTriL`, or a `MixtureSameFamily` of those
    (the learned mixture prior, a VampPrior): each component scaled, the mixture weights kept. T = 1 returns
    `distribution` itself. `temperature` may be a tensor (an exported signature's input).

    Raises:
      ValueError: T <= 0; or another kind of distribution at T != 1 (naming it).
    """
    if not tf.is_tensor(temperature):
        if check_temperature(temperature) == 1.0:
            return distribution
    if isinstance(distribution, tfd.Independent):
        return tfd.Independent(tempered(distribution.distribution, temperature),
                               distribution.reinterpreted_batch_ndims)
    if isinstance(distribution, tfd.Normal):
        return tfd.Normal(distribution.loc, distribution.scale * temperature)
    if isinstance(distribution, tfd.MultivariateNormalTriL):
        return tfd.MultivariateNormalTriL(distribution.loc, distribution.scale.to_dense() * temperature)
    if isinstance(distribution, tfd.MixtureSameFamily):
        return tfd.MixtureSameFamily(distribution.mixture_distribution,
                                     tempered(distribution.components_distribution, temperature))
    raise ValueError(f"a temperature scales a Normal prior or a mixture of Normals; this prior is a "
                     f"{type(distribution).__name__}: draw it at temperature 1, or fit a sampler (gmm, flow)")


def _check_count(n) -> int | tf.Tensor:
    """`n` draws: a positive int, or a tensor (checked where its value is known)."""
    if tf.is_tensor(n):
        value = tf.get_static_value(n)
        return n if value is None else checks.positive_int(int(value), "n")
    return checks.positive_int(n, "n")


# --------------------------------------------------------------------------- the interface
class Sampler(snt.Module):
    """A density over codes z [latent] fitted after training: `fit`, `sample`, `log_prob` (module docstring).

    Subclasses set `kind`, create every variable in `__init__` (so `load` can restore into a new one), and
    define `_fit(codes) -> dict` and `distribution(temperature)` or `sample` and `log_prob`.
    """

    kind = ""
    min_codes = 2  # the fewest codes a fit takes

    def __init__(self, latent_size: int, seed: int, name: str):
        super().__init__(name=name)
        self.latent_size = checks.positive_int(latent_size, "latent_size")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._fit_json = "null"  # what `fit` did, as JSON (a dict attribute would be wrapped by tf.Module tracking)

    def options(self) -> dict:
        """The constructor's keyword arguments besides latent_size, JSON-ready (what `save` writes)."""
        return {"seed": self.seed}

    def fit(self, codes) -> dict:
        """Fits the sampler to `codes` float [N, latent] (posterior means of training images).

        Returns (and keeps as `fit_record`) a JSON-ready dict: "codes" (N), "seconds", and what the kind reports
        (its final mean log-likelihood or loss in nats per code, iterations or steps).

        Raises:
          ValueError: codes that are not [N, latent_size] finite numbers, or fewer than the kind needs.
        """
        codes = self._checked_codes(codes)
        started = time.perf_counter()
        record = {"codes": int(codes.shape[0]), **self._fit(codes)}
        record["seconds"] = round(time.perf_counter() - started, 3)
        self._fit_json = json.dumps(record)
        return record

    @property
    def fit_record(self) -> dict | None:
        """What `fit` did (a JSON-ready dict; see `fit`), or None before it."""
        return json.loads(self._fit_json)

    def _checked_codes(self, codes) -> np.ndarray:
        array = np.asarray(codes, np.float64)
        if array.ndim != 2 or array.shape[1] != self.latent_size:
            raise ValueError(f"the {self.kind} sampler fits codes [N, {self.latent_size}]; got shape "
                             f"{list(array.shape)}")
        if len(array) < self.min_codes:
            raise ValueError(f"the {self.kind} sampler needs at least {self.min_codes} codes to fit; got {len(array)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"the codes given to the {self.kind} sampler have NaN or infinite values")
        return array

    def _fit(self, codes: np.ndarray) -> dict:
        raise NotImplementedError

    def distribution(self, temperature=1.0) -> tfd.Distribution:
        """The fitted density over z (event [latent]) at `temperature`."""
        raise NotImplementedError

    def sample(self, n, seed: tf.Tensor | None = None, temperature=1.0) -> tf.Tensor:
        """n draws z float32 [n, latent]; `seed` a stateless [2] int seed (the same seed, the same draws)."""
        return self.distribution(temperature).sample(_check_count(n), seed=seed)

    def log_prob(self, z) -> tf.Tensor:
        """log density of codes z [n, latent], nats: float32 [n]."""
        return self.distribution().log_prob(tf.convert_to_tensor(z, tf.float32))


class PriorSampler:
    """The model's own prior p(z) as a sampler (nothing to fit): `sample(n, seed, temperature)`, `log_prob`."""

    kind = "prior"

    def __init__(self, prior: tfd.Distribution):
        self.prior = prior
        self.latent_size = int(prior.event_shape[-1])
        self.fit_record = None

    def sample(self, n, seed: tf.Tensor | None = None, temperature=1.0) -> tf.Tensor:
        """n draws z ~ p(z) with its scale times `temperature`: [n, latent]."""
        return tempered(self.prior, temperature).sample(_check_count(n), seed=seed)

    def log_prob(self, z) -> tf.Tensor:
        return self.prior.log_prob(z)


class _Tempered:
    """A sampler drawn at a fixed temperature: `sample(n, seed)` (what `vae.sample(n, sampler=...)` calls)."""

    def __init__(self, sampler, temperature):
        self.sampler, self.temperature = sampler, temperature
        self.kind, self.latent_size = sampler.kind, sampler.latent_size

    def sample(self, n, seed: tf.Tensor | None = None) -> tf.Tensor:
        return self.sampler.sample(n, seed=seed, temperature=self.temperature)

    def log_prob(self, z) -> tf.Tensor:
        return self.sampler.log_prob(z)


def with_temperature(sampler, temperature) -> _Tempered:
    """`sampler` that draws at `temperature` (> 0) whenever it is asked for `sample(n, seed)`."""
    if not tf.is_tensor(temperature):
        check_temperature(temperature)
    return _Tempered(sampler, temperature)


# --------------------------------------------------------------------------- a Gaussian mixture by EM
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


# --------------------------------------------------------------------------- trained samplers (two-stage, flow)
class _Standardised(Sampler):
    """A sampler trained on codes standardised by their mean and standard deviation (variables `shift`, `scale`
    [latent], set by `fit`), for a fixed number of Adam steps on minibatches drawn with stateless seeds."""

    def __init__(self, latent_size: int, seed: int, name: str, steps: int, batch_size: int, learning_rate: float):
        super().__init__(latent_size, seed, name)
        self.steps = checks.positive_int(steps, "steps")
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        self.learning_rate = checks.positive_number(learning_rate, "learning_rate")
        self._init = _SeededInit(seed)
        self.shift = tf.Variable(tf.zeros([latent_size]), trainable=False, name="shift")
        self.scale = tf.Variable(tf.ones([latent_size]), trainable=False, name="scale")

    def options(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                **super().options()}

    def _loss(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The training loss of standardised codes [b, latent], nats per code."""
        raise NotImplementedError

    def _fit(self, codes: np.ndarray) -> dict:
        self.shift.assign(codes.mean(axis=0).astype(np.float32))
        self.scale.assign(np.maximum(codes.std(axis=0), 1e-6).astype(np.float32))
        standardised = tf.constant((codes - codes.mean(axis=0)) / np.maximum(codes.std(axis=0), 1e-6), tf.float32)
        losses = _train(self, self._loss, standardised, self.steps, min(self.batch_size, len(codes)),
                        self.learning_rate, self.seed)
        # The loss is of the standardised codes; log p(z) = log p(s) - sum log scale.
        return {"steps": self.steps, "final_loss": losses[-1] + float(np.sum(np.log(self.scale.numpy()))),
                "losses_every_500_steps": [round(value, 4) for value in losses]}

    def _standardise(self, z: tf.Tensor) -> tf.Tensor:
        return (tf.convert_to_tensor(z, tf.float32) - self.shift) / self.scale


def _train(module: snt.Module, loss, data: tf.Tensor, steps: int, batch_size: int, learning_rate: float,
           seed: int, chunk: int = 500) -> list[float]:
    """Adam (`optimizers.build_optimizer`) on `module.trainable_variables` for `steps` steps of `loss(batch, seed)`
    on minibatches of `data` [N, d] drawn with replacement, step k from the stateless seed (seed, k). Returns the
    mean loss of each `chunk` steps."""
    optimizer = optimizers.build_optimizer(module, learning_rate)
    variables = module.trainable_variables
    count = int(data.shape[0])

    @tf.function  # (XLA here: 2.5x slower for 2,000 steps, its compile included)
    def run(first, last):
        total = tf.constant(0.0)
        for k in tf.range(first, last):
            step_seed = tf.stack([tf.constant(seed, tf.int32), k])
            index = tf.random.stateless_uniform([batch_size], step_seed, minval=0, maxval=count, dtype=tf.int32)
            with tf.GradientTape() as tape:
                value = loss(tf.gather(data, index), tf.stack([step_seed[0] + 1, k]))
            optimizer.apply(tape.gradient(value, variables), variables)
            total += value
        return total / tf.cast(last - first, tf.float32)

    return [float(run(tf.constant(first), tf.constant(min(first + chunk, steps))))
            for first in range(0, steps, chunk)]


class TwoStageSampler(_Standardised):
    """Dai & Wipf's (2019) second stage: a small VAE on the (standardised) codes s.

        q(u|s) = N(mu_q(s), diag sigma_q(s)^2),   p(s|u) = N(mu(u), gamma^2 I),   p(u) = N(0, T^2 I)

    with u of the codes' size, gamma = min_scale + softplus(raw_gamma) learned (it shrinks as the second stage
    fits, the paper's point), both networks MLPs of `hidden_sizes` (ReLU). A draw is mu(u),
    un-standardised (the paper's sampler: the mean, not a draw of p(s|u)). `log_prob` is the importance-sampled
    bound log (1/k) sum_i p(s|u_i) p(u_i) / q(u_i|s) (k = 64 draws of a fixed seed), a lower bound on log p(z).

    gamma starts at `initial_gamma` = 0.1, not at the paper's 1: from gamma = 1 the second stage can stay at its
    collapsed optimum, u unused and the standardised codes explained as N(0, I) noise (on codes on a 2-d ring,
    3,000 steps from gamma = 1 never left it: held-out log p 3.53 nats per code, the Gaussian's; from 0.1 or
    0.3, 2.04).

    The defaults (8,000 steps at a learning rate of 3e-3) are what the codes of `mnist-bernoulli-20d` (10
    epochs, 50,000 codes fitted, 10,000 held out) needed: a held-out bound of -23.8 nats per code, against
    -24.8 after 4,000 steps at 3e-3 and -25.5 after 4,000 steps at 1e-3 with 512 units (the GMM: -23.5).
    """

    kind = "two-stage"

    def __init__(self, latent_size: int, hidden_sizes: Sequence[int] = (256, 256), *, steps: int = 8000,
                 batch_size: int = 256, learning_rate: float = 3e-3, initial_gamma: float = 0.1,
                 min_scale: float = 1e-3, seed: int = 0, name: str = "two_stage_sampler"):
        super().__init__(latent_size, seed, name, steps, batch_size, learning_rate)
        self.hidden_sizes = checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.min_scale = checks.positive_number(min_scale, "min_scale")
        self.initial_gamma = checks.positive_number(initial_gamma, "initial_gamma")
        if self.initial_gamma <= self.min_scale:
            raise ValueError(f"initial_gamma must be above min_scale ({self.min_scale}), got {initial_gamma}")
        d = self.latent_size
        self.encoder = snt.nets.MLP([*self.hidden_sizes, 2 * d], w_init=self._init, name="encoder")
        self.decoder = snt.nets.MLP([*self.hidden_sizes, d], w_init=self._init, name="decoder")
        self.raw_gamma = tf.Variable(float(tfp.math.softplus_inverse(self.initial_gamma - self.min_scale)), name="raw_gamma")
        self.decoder(self.encoder(tf.zeros([1, d]))[:, :d])  # creates the variables

    def options(self) -> dict:
        return {"hidden_sizes": list(self.hidden_sizes), "initial_gamma": self.initial_gamma, "min_scale": self.min_scale,
                **super().options()}

    @property
    def gamma(self) -> tf.Tensor:
        """p(s|u)'s standard deviation, in standardised code units (a scalar)."""
        return self.min_scale + tf.nn.softplus(self.raw_gamma)

    def posterior(self, s: tf.Tensor) -> tfd.Distribution:
        """q(u|s) for standardised codes [..., latent]: batch [...], event [latent]."""
        loc, raw = tf.split(self.encoder(s), 2, axis=-1)
        return tfd.Independent(tfd.Normal(loc, self.min_scale + tf.nn.softplus(raw)), 1)

    def likelihood(self, u: tf.Tensor) -> tfd.Distribution:
        """p(s|u) for u [..., latent]: batch [...], event [latent]."""
        return tfd.Independent(tfd.Normal(self.decoder(u), self.gamma), 1)

    def _loss(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        posterior = self.posterior(batch)
        u = posterior.mean() + posterior.stddev() * _normal(tf.shape(batch), seed)
        prior = tfd.Independent(tfd.Normal(tf.zeros_like(u), 1.0), 1)
        rate = tfd.kl_divergence(posterior, prior)
        return tf.reduce_mean(rate - self.likelihood(u).log_prob(batch))

    def sample(self, n, seed: tf.Tensor | None = None, temperature=1.0) -> tf.Tensor:
        if not tf.is_tensor(temperature):
            check_temperature(temperature)
        u = _normal(tf.stack([_check_count(n), self.latent_size]), seed) * temperature
        return self.shift + self.scale * self.decoder(u)

    def log_prob(self, z, k: int = 64) -> tf.Tensor:
        s = self._standardise(z)
        posterior = self.posterior(s)
        u = posterior.sample(k, seed=tf.constant([0, 0]))  # [k, n, latent]
        prior = tfd.Independent(tfd.Normal(tf.zeros_like(u), 1.0), 1)
        log_weights = self.likelihood(u).log_prob(s) + prior.log_prob(u) - posterior.log_prob(u)
        return tf.reduce_logsumexp(log_weights, axis=0) - math.log(k) - tf.reduce_sum(tf.math.log(self.scale))


class _MaskedNetwork(snt.Module):
    """MADE (Germain et al., 2015): x [b, d] -> (shift, log_scale), each [b, d], entry i a function of x_<i.

    `flows.made_masks` gives the masks, applied in the forward pass (so no update breaks the autoregressive
    property); ReLU between layers; the output layer starts at zero (the step starts as the identity). The
    log-scale is bounded to (-3, 3) by 3 tanh(. / 3), so no step can blow a standardised code up by more than
    e^3 while it trains.
    """

    def __init__(self, size: int, hidden_sizes: Sequence[int], init: snt.initializers.Initializer, name: str):
        super().__init__(name=name)
        masks = flows.made_masks(size, hidden_sizes, params=2)
        self._masks = [tf.constant(mask) for mask in masks]
        self.kernels = [tf.Variable(init(mask.shape, tf.float32) if index < len(masks) - 1 else tf.zeros(mask.shape),
                                    name=f"w_{index}") for index, mask in enumerate(masks)]
        self.biases = [tf.Variable(tf.zeros(mask.shape[1]), name=f"b_{index}") for index, mask in enumerate(masks)]

    def __call__(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        h = x
        for index, (kernel, bias, mask) in enumerate(zip(self.kernels, self.biases, self._masks)):
            h = tf.matmul(h, kernel * mask) + bias
            h = tf.nn.relu(h) if index < len(self.kernels) - 1 else h
        pairs = tf.reshape(h, tf.concat([tf.shape(h)[:-1], [-1, 2]], 0))  # output (i, p) at i * 2 + p
        return pairs[..., 0], 3.0 * tf.tanh(pairs[..., 1] / 3.0)


class FlowSampler(_Standardised):
    """A masked autoregressive flow over the codes (Papamakarios et al., 2017), trained by maximum likelihood.

        s ~ N(0, T^2 I),   s -> MAF_1 -> reverse -> ... -> MAF_K = standardised code,   z = shift + scale * that

    Each step is `tfb.MaskedAutoregressiveFlow` with a `_MaskedNetwork` (hidden_sizes, ReLU); the dimensions'
    order is reversed between steps (`tfb.Permute`). log p(z) is one pass of the networks; a draw inverts each
    step, latent_size sequential passes.
    """

    kind = "flow"

    def __init__(self, latent_size: int, num_steps: int = 4, hidden_sizes: Sequence[int] = (128, 128), *,
                 steps: int = 4000, batch_size: int = 256, learning_rate: float = 1e-3, seed: int = 0,
                 name: str = "flow_sampler"):
        super().__init__(latent_size, seed, name, steps, batch_size, learning_rate)
        self.num_steps = checks.positive_int(num_steps, "num_steps")
        self.hidden_sizes = checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.networks = [_MaskedNetwork(self.latent_size, self.hidden_sizes, self._init, name=f"made_{k}")
                         for k in range(self.num_steps)]

    def options(self) -> dict:
        return {"num_steps": self.num_steps, "hidden_sizes": list(self.hidden_sizes), **super().options()}

    def bijector(self, standardised: bool = False) -> tfb.Bijector:
        """The flow from its base N(0, I) to codes z (to standardised codes with `standardised`)."""
        reverse = list(range(self.latent_size))[::-1]
        steps = []  # in the order they apply to a base draw
        for k, network in enumerate(self.networks):
            if k > 0:
                steps.append(tfb.Permute(permutation=reverse))
            steps.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=network, name=f"maf_{k}"))
        if not standardised:
            steps += [tfb.Scale(self.scale), tfb.Shift(self.shift)]
        return tfb.Chain(steps[::-1])

    def distribution(self, temperature=1.0, standardised: bool = False) -> tfd.Distribution:
        """The flow's density over z (event [latent]), its base N(0, T^2 I)."""
        if not tf.is_tensor(temperature):
            check_temperature(temperature)
        base = tfd.Independent(tfd.Normal(tf.zeros([self.latent_size]), tf.ones([self.latent_size]) * temperature), 1)
        return tfd.TransformedDistribution(base, self.bijector(standardised))

    def _loss(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        del seed  # maximum likelihood draws nothing
        return -tf.reduce_mean(self.distribution(standardised=True).log_prob(batch))


# --------------------------------------------------------------------------- building, saving, loading
_CLASSES = {cls.kind: cls for cls in (GaussianMixtureSampler, TwoStageSampler, FlowSampler)}


def build(kind: str, latent_size: int, **options) -> Sampler:
    """A new (unfitted) sampler of `kind` ("gmm", "two-stage", "flow") for codes of `latent_size`.

    Raises:
      ValueError: an unknown kind (naming the known ones; "prior" is not fitted: `PriorSampler(model.prior)`).
    """
    if kind not in _CLASSES:
        raise ValueError(f"unknown sampler {kind!r}; fitted samplers: {', '.join(FITTED)} (and 'prior', the "
                         "model's own p(z))")
    return _CLASSES[kind](latent_size, **options)


def save(sampler: Sampler, directory: str | os.PathLike) -> Path:
    """Writes a fitted sampler to `directory` (replacing what is there): sampler.json and weights.* (a TF
    checkpoint). Written beside it first and renamed into place, so the folder is whole or absent."""
    directory = Path(directory)
    if sampler.fit_record is None:
        raise ValueError(f"the {sampler.kind} sampler is not fitted: call sampler.fit(codes) before saving it")
    spec = {"kind": sampler.kind, "latent_size": sampler.latent_size, "options": sampler.options(),
            "fit": sampler.fit_record}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.train.Checkpoint(sampler=sampler).write(str(staging / _WEIGHTS))
        (staging / _SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def load(directory: str | os.PathLike) -> Sampler:
    """The sampler that `save` wrote to `directory`.

    Raises:
      ValueError: no sampler.json there, or weights that do not fit what it describes.
    """
    directory = Path(directory)
    path = directory / _SPEC_FILE
    if not path.is_file():
        raise ValueError(f"no fitted sampler in {directory} (no {_SPEC_FILE}): fit one with "
                         "tfvae.run_samplers.fitted_sampler(run_dir, kind) or `tfvae sample RUN_DIR --sampler KIND`")
    spec = json.loads(path.read_text())
    sampler = build(spec["kind"], spec["latent_size"], **spec["options"])
    tf.train.Checkpoint(sampler=sampler).read(str(directory / _WEIGHTS)).assert_existing_objects_matched()
    sampler._fit_json = json.dumps(spec["fit"])
    return sampler


def run_path(run_dir: str | os.PathLike, kind: str) -> Path:
    """Where a run keeps its fitted sampler of `kind`: RUN_DIR/samplers/KIND."""
    return Path(run_dir) / RUN_SUBDIR / kind
