"""Objectives: pure functions of a model (or its distributions), images and a seed.

    -ELBO_beta(x) = E_q(z|x)[-log p(x|z)] + beta * KL(q(z|x) || p(z))
                  =        distortion      + beta * rate

beta = 1 is the negative ELBO of Kingma & Welling (2014); other values give
the beta-VAE of Higgins et al. (2017). The importance-weighted bound of Burda
et al. (2015, eq. 8) with k draws z_i ~ q(z|x) is

    IWAE_k(x) = log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)  <=  log p(x),

the ELBO in expectation at k = 1, rising to log p(x) as k grows.
`importance_samples` is the one place z is drawn and scored: the ELBO, the
IWAE bound, and `tfvae.evaluation`'s estimate of log p(x) all start there.

Everything is in nats per example (summed over pixels and latent
dimensions). Nothing here reads a config or keeps state: the training loop
(`tfvae.step`) picks the objective and its weights from `TrainConfig`.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.data import ArraySource
from tfvae.model import as_images, draw_latents

tfd = tfp.distributions


class Terms(NamedTuple):
    """The terms of an objective, each [batch] (per example) or a scalar (a batch mean), nats."""

    loss: tf.Tensor  # what is minimised, e.g. distortion + beta * rate
    distortion: tf.Tensor  # -log p(x|z), averaged over the draws of z ~ q(z|x)
    rate: tf.Tensor  # KL(q(z|x) || p(z))

    @property
    def elbo(self) -> tf.Tensor:
        """The evidence lower bound, -(distortion + rate) (beta = 1 whatever the loss's weight)."""
        return -(self.distortion + self.rate)


# --------------------------------------------------------------------------- rate
def kl_divergence(posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor | None) -> tf.Tensor:
    """KL(q || p) per example [batch]: analytic where TFP has it, else log q(z) - log p(z) at z."""
    try:
        return tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        if z is None:
            raise
        return posterior.log_prob(z) - prior.log_prob(z)


def rate(posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor, estimator: str = "analytic"):
    """KL(q || p) per example, [batch], by the `estimator` ("analytic" or "monte_carlo").

    "monte_carlo" averages log q(z) - log p(z) over the draws z [n, batch,
    latent] (or [batch, latent]); it is unbiased and converges to the analytic
    value as n grows. "analytic" falls back to it where TFP has no closed form.
    """
    if estimator == "analytic":
        return kl_divergence(posterior, prior, _first_draws(z, posterior))
    if estimator != "monte_carlo":
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'analytic' or 'monte_carlo'")
    return _mean_over_draws(posterior.log_prob(z) - prior.log_prob(z), posterior)


def kl_per_dimension(
    posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor | None = None, estimator: str = "analytic"
) -> tf.Tensor:
    """KL of each latent dimension, [batch, latent], for factorised q and p (they sum to the total KL).

    Both must be `tfd.Independent` over one axis of a distribution with one
    batch entry per latent dimension (a diagonal Normal, say). "monte_carlo"
    (or an analytic KL TFP lacks) uses the draws `z` [n, batch, latent] or
    [batch, latent], averaged over n.

    Raises:
      ValueError: when q or p is not factorised that way.
    """
    q_factors, p_factors = _factors(posterior), _factors(prior)
    if q_factors is None or p_factors is None:
        raise ValueError(
            "KL per latent dimension needs posterior and prior of the form tfd.Independent(d, 1) with one factor "
            f"per dimension; got {type(posterior).__name__} and {type(prior).__name__}"
        )
    if estimator == "analytic":
        try:
            return tfd.kl_divergence(q_factors, p_factors)
        except NotImplementedError:
            pass
    elif estimator != "monte_carlo":
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'analytic' or 'monte_carlo'")
    if z is None:
        raise ValueError("a Monte Carlo KL needs the draws z")
    return _mean_over_draws(q_factors.log_prob(z) - p_factors.log_prob(z), posterior, event_ndims=1)


def is_factorised(distribution: tfd.Distribution) -> bool:
    """True when `distribution` is Independent over one axis (one factor per latent dimension)."""
    return _factors(distribution) is not None


def free_bits_rate(kl_per_dim: tf.Tensor, floor: float) -> tf.Tensor:
    """The free-bits rate (Kingma et al., 2016, eq. 15): sum_d max(floor, mean_batch KL_d), a scalar in nats.

    Args:
      kl_per_dim: [batch, latent] KL of each example and latent dimension.
      floor: nats per dimension, >= 0. A dimension whose batch-mean KL is
        below the floor contributes the constant floor (and no gradient).
    """
    return tf.reduce_sum(tf.maximum(tf.cast(floor, kl_per_dim.dtype), tf.reduce_mean(kl_per_dim, axis=0)))


def _factors(distribution: tfd.Distribution) -> tfd.Distribution | None:
    if not isinstance(distribution, tfd.Independent):
        return None
    # A Python int, so that autograph leaves this `if` alone inside tf.function.
    ndims = tf.get_static_value(tf.convert_to_tensor(distribution.reinterpreted_batch_ndims))
    return distribution.distribution if ndims == 1 else None


def _mean_over_draws(values: tf.Tensor, posterior: tfd.Distribution, event_ndims: int = 0) -> tf.Tensor:
    """Averages the leading draw axes of `values` away, down to the posterior's batch (+ event) rank."""
    extra = values.shape.rank - posterior.batch_shape.rank - event_ndims
    return tf.reduce_mean(values, axis=list(range(extra))) if extra > 0 else values


def _first_draws(z: tf.Tensor | None, posterior: tfd.Distribution) -> tf.Tensor | None:
    """z reduced to one draw per example, [batch, latent], for the analytic KL's fallback."""
    if z is None:
        return None
    while z.shape.rank > posterior.batch_shape.rank + 1:
        z = z[0]
    return z


# --------------------------------------------------------------------------- draws of z
def log_mean_exp(values: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """log(mean(exp(values))) along `axis`, stably: logsumexp - log n."""
    n = tf.cast(tf.shape(values)[axis], values.dtype)
    return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(n)


class ImportanceSamples(NamedTuple):
    """Draws z ~ q(z|x) and the log densities at them; leading axes are the sample shape."""

    posterior: tfd.Distribution  # q(z|x), batch [b], event [latent]
    z: tf.Tensor  # [*sample_shape, b, latent]
    log_likelihood: tf.Tensor  # log p(x|z), [*sample_shape, b]
    log_ratio: tf.Tensor  # log p(z) - log q(z|x), [*sample_shape, b]

    @property
    def log_weights(self) -> tf.Tensor:
        """log p(x, z) / q(z|x), [*sample_shape, b]: the importance weights of log p(x)."""
        return self.log_likelihood + self.log_ratio


def importance_samples(
    model, images: tf.Tensor, sample_shape, seed: tf.Tensor | None = None, posterior: tfd.Distribution | None = None
) -> ImportanceSamples:
    """Draws z of `sample_shape` per image from q(z|x) (reparameterised) and scores them.

    Args:
      model: anything with `encode`, `decode` and `prior` (a `tfvae.VAE`).
      images: [b, H, W, C].
      sample_shape: draws per image, e.g. [k] or [n, k].
      seed: a stateless seed, [2] int, or None for TensorFlow's stateful draws.
      posterior: q(z|x) of `images` when the caller has it already (one
        encoding for many chunks of draws); encoded here otherwise.

    The decoder runs once on all draws together ([*sample_shape, b, latent]),
    so k draws cost one large matrix product per layer, not k small ones.
    """
    images = as_images(images)  # array-likes and uint8 (free for a float32 tensor)
    if posterior is None:
        posterior = model.encode(images)
    z = draw_latents(posterior, sample_shape, seed)
    log_likelihood = model.decode(z).log_prob(images)
    log_ratio = model.prior.log_prob(z) - posterior.log_prob(z)
    return ImportanceSamples(posterior, z, log_likelihood, log_ratio)


# --------------------------------------------------------------------------- bounds
def iwae_bound(model, images: tf.Tensor, k: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """The IWAE bound with k importance samples per example, [batch], nats (Burda et al., 2015, eq. 8).

    At k = 1 it is a one-sample estimate of the ELBO (with the Monte Carlo
    KL); its expectation rises with k towards log p(x).
    """
    return log_mean_exp(importance_samples(model, images, [k], seed).log_weights, axis=0)


def negative_elbo(
    model,
    images: tf.Tensor,
    beta: float = 1.0,
    seed: tf.Tensor | None = None,
    *,
    num_samples: int = 1,
    kl_estimator: str = "analytic",
) -> Terms:
    """Per-example terms [batch] of the beta-weighted negative ELBO.

    Args:
      model: a `tfvae.VAE` (anything with `encode`, `decode` and `prior`).
      images: [batch, H, W, C], values the likelihood can score (any array-like; uint8 is scaled by 1/255).
      beta: weight of the rate, >= 0.
      seed: optional stateless seed (shape [2] int) for the draws of z.
      num_samples: draws of z per image; the distortion (and a Monte Carlo
        rate) averages over them.
      kl_estimator: "analytic" (TFP's closed form) or "monte_carlo".
    """
    samples = importance_samples(model, images, [num_samples], seed)
    distortion = -tf.reduce_mean(samples.log_likelihood, axis=0)
    kl = rate(samples.posterior, model.prior, samples.z, kl_estimator)
    return Terms(loss=distortion + beta * kl, distortion=distortion, rate=kl)


# --------------------------------------------------------------------------- batch losses to train on
def elbo_loss(
    model,
    images: tf.Tensor,
    seed: tf.Tensor,
    *,
    beta: tf.Tensor | float = 1.0,
    num_samples: int = 1,
    kl_estimator: str = "analytic",
    free_bits: float = 0.0,
) -> Terms:
    """Batch means (scalars, nats per image) of the beta-weighted negative ELBO, the loss to differentiate.

    loss = mean distortion + beta * mean rate, with the distortion averaged
    over `num_samples` draws per image, or with `free_bits` > 0 the rate
    replaced by `free_bits_rate` (each dimension's batch-mean KL floored).
    `distortion` and `rate` are the plain means (no floor, no weight).
    """
    samples = importance_samples(model, images, [num_samples], seed)
    distortion = -tf.reduce_mean(samples.log_likelihood)
    if free_bits > 0:
        per_dim = kl_per_dimension(samples.posterior, model.prior, samples.z, kl_estimator)
        kl = tf.reduce_mean(tf.reduce_sum(per_dim, axis=-1))
        penalty = free_bits_rate(per_dim, free_bits)
    else:
        kl = tf.reduce_mean(rate(samples.posterior, model.prior, samples.z, kl_estimator))
        penalty = kl
    return Terms(loss=distortion + beta * penalty, distortion=distortion, rate=kl)


def iwae_loss(
    model,
    images: tf.Tensor,
    seed: tf.Tensor,
    *,
    k: int,
    num_samples: int = 1,
    kl_weight: tf.Tensor | float = 1.0,
    kl_estimator: str = "analytic",
) -> Terms:
    """Batch means of the negative IWAE bound with k samples, averaged over `num_samples` independent bounds.

    The weight w enters each log weight as log p(x|z) + w (log p(z) - log
    q(z|x)): w = 1 is the IWAE bound (Burda et al., 2015), and a KL warm-up
    still applies; several bounds per image follow Rainforth et al. (2018).
    `distortion` and `rate` are the plain means over all draws, for logging.
    """
    samples = importance_samples(model, images, [num_samples, k], seed)
    bound = log_mean_exp(samples.log_likelihood + kl_weight * samples.log_ratio, axis=1)  # [num_samples, b]
    distortion = -tf.reduce_mean(samples.log_likelihood)
    kl = tf.reduce_mean(rate(samples.posterior, model.prior, samples.z, kl_estimator))
    return Terms(loss=-tf.reduce_mean(bound), distortion=distortion, rate=kl)


# --------------------------------------------------------------------------- over many images
def average_terms(model, batches, beta: float = 1.0, seed: int = 0, batch_size: int | None = None) -> Terms:
    """Example-weighted means of `negative_elbo`'s terms over every image of `batches`, nats per image.

    `batches` is an `ArraySource` or a `tf.data.Dataset` of image batches [b,
    H, W, C] (or `(images, labels)`), or images [N, H, W, C] held in memory, taken in
    order in batches of `batch_size`. The draw of z for batch i uses the
    stateless seed (seed, i), so the same model and batches give the same
    numbers either way. One compiled loop; over held images it reads no
    `tf.data` iterator (0.19 s instead of 0.27 s for the MNIST test set here).
    """
    beta, seed = tf.constant(beta, tf.float32), tf.constant(seed, tf.int32)
    if isinstance(batches, ArraySource):
        batches = batches.as_dataset()
    if isinstance(batches, tf.data.Dataset):
        return _average_terms(model, batches, beta, seed)
    if batch_size is None:
        raise ValueError("average_terms over images held in memory needs batch_size")
    images = tf.convert_to_tensor(batches, tf.float32)
    return _average_terms(model, _HeldBatches(images, batch_size), beta, seed)


class _HeldBatches(NamedTuple):
    images: tf.Tensor  # [N, H, W, C]
    batch_size: int


@tf.function
def _average_terms(model, batches, beta, seed):
    sums = tf.zeros([3])
    count = tf.constant(0.0)

    def add(sums, count, images, batch_index):
        terms = negative_elbo(model, images, beta, seed=tf.stack([seed, batch_index]))
        return sums + tf.stack([tf.reduce_sum(term) for term in terms]), count + tf.cast(tf.shape(images)[0], tf.float32)

    if isinstance(batches, _HeldBatches):
        size = batches.batch_size
        for batch_index in tf.range((tf.shape(batches.images)[0] + size - 1) // size):
            sums, count = add(sums, count, batches.images[batch_index * size : (batch_index + 1) * size], batch_index)
    else:
        batch_index = tf.constant(0, tf.int32)
        for element in batches:
            sums, count = add(sums, count, element[0] if isinstance(element, tuple) else element, batch_index)
            batch_index += 1
    return Terms(*tf.unstack(sums / count))


__all__ = [
    "ImportanceSamples",
    "Terms",
    "average_terms",
    "elbo_loss",
    "free_bits_rate",
    "importance_samples",
    "is_factorised",
    "iwae_bound",
    "iwae_loss",
    "kl_divergence",
    "kl_per_dimension",
    "log_mean_exp",
    "negative_elbo",
    "rate",
]
