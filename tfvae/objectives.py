"""Objectives: the negative ELBO with a KL weight, the IWAE bound, free bits and KL schedules.

    -ELBO_beta(x) = -E_q(z|x)[log p(x|z)] + beta * KL(q(z|x) || p(z))

The first term is the distortion (reconstruction cost), the second the rate.
beta = 1 is the ELBO of Kingma & Welling (2014); other values give the
beta-VAE of Higgins et al. (2017). The importance-weighted bound of Burda et
al. (2015, eq. 8) with k samples z_i ~ q(z|x) is

    IWAE_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x)  <=  log p(x),

equal in expectation to the ELBO at k = 1 and rising to log p(x) as k grows.
All terms are in nats per example: summed over pixels and latent dimensions;
`batch_mean` averages over the batch.

The training loop uses two entry points: `kl_weight(config, step)`, the KL
weight of a `TrainConfig`'s schedule at a step, and `training_terms(model,
images, config, kl_weight, seed)`, the loss to differentiate plus the terms to
log. Everything else here is a pure function of a model, images and a seed.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import precision
from tfvae.config import TrainConfig
from tfvae.model import as_images, draw_latents

tfd = tfp.distributions

# Fu et al. (2019): each cycle ramps the weight up over its first half (R = 0.5), then holds it.
_CYCLE_RAMP_FRACTION = 0.5


class Terms(NamedTuple):
    """The terms of the objective, each [batch] (per example) or a scalar (mean)."""

    loss: tf.Tensor  # what is minimised, e.g. reconstruction + beta * kl, nats
    reconstruction: tf.Tensor  # -log p(x|z) averaged over the draws of z ~ q(z|x), nats
    kl: tf.Tensor  # KL(q(z|x) || p(z)), nats


# --------------------------------------------------------------------------- KL
def kl_divergence(posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor | None) -> tf.Tensor:
    """KL(q || p) per example [batch]: analytic where TFP has it, else log q(z) - log p(z) at z."""
    try:
        return tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        if z is None:
            raise
        return posterior.log_prob(z) - prior.log_prob(z)


def kl_estimate(posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor, estimator: str = "analytic"):
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


# --------------------------------------------------------------------------- bounds
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


def importance_samples(model, images: tf.Tensor, sample_shape, seed: tf.Tensor | None = None) -> ImportanceSamples:
    """Encodes `images` once, draws z of `sample_shape` per image (reparameterised) and scores them.

    The decoder runs once on all draws together ([*sample_shape, b, latent]),
    so k samples cost one big matrix product per layer, not k small ones.
    """
    images = as_images(images)  # array-likes and uint8 (free for a float32 tensor)
    posterior = model.encode(images)
    z = draw_latents(posterior, sample_shape, seed)
    log_likelihood = model.decode(z).log_prob(images)
    log_ratio = model.prior.log_prob(z) - posterior.log_prob(z)
    return ImportanceSamples(posterior, z, log_likelihood, log_ratio)


def iwae_bound(model, images: tf.Tensor, k: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """The IWAE bound with k importance samples per example, [batch], nats (Burda et al., 2015, eq. 8).

    At k = 1 it is a one-sample estimate of the ELBO (with the Monte Carlo
    KL); its expectation rises with k towards log p(x).
    """
    samples = importance_samples(model, images, [k], seed)
    return log_mean_exp(samples.log_likelihood + samples.log_ratio, axis=0)


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
      beta: weight of the KL term, >= 0.
      seed: optional stateless seed (shape [2] int) for the draws of z.
      num_samples: draws of z per image; the reconstruction term (and a
        Monte Carlo KL) averages over them.
      kl_estimator: "analytic" (TFP's closed form) or "monte_carlo".
    """
    samples = importance_samples(model, images, [num_samples], seed)
    reconstruction = -tf.reduce_mean(samples.log_likelihood, axis=0)
    kl = kl_estimate(samples.posterior, model.prior, samples.z, kl_estimator)
    return Terms(loss=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


def free_bits_rate(kl_per_dim: tf.Tensor, floor: float) -> tf.Tensor:
    """The free-bits rate (Kingma et al., 2016, eq. 15): sum_d max(floor, mean_batch KL_d), a scalar in nats.

    Args:
      kl_per_dim: [batch, latent] KL of each example and latent dimension.
      floor: nats per dimension, >= 0. A dimension whose batch-mean KL is
        below the floor contributes the constant floor (and no gradient).
    """
    return tf.reduce_sum(tf.maximum(tf.cast(floor, kl_per_dim.dtype), tf.reduce_mean(kl_per_dim, axis=0)))


# --------------------------------------------------------------------------- for the training loop
def kl_weight(config: TrainConfig, step) -> tf.Tensor:
    """The KL weight in effect at global step `step` (a float32 scalar), by `config.kl_schedule`.

    "constant": config.beta. "linear": beta * min(1, step / warmup_steps),
    from 0 at step 0 to beta at warmup_steps (Bowman et al., 2016; Sønderby et
    al., 2016). "cyclical": the linear ramp over the first half of every
    cycle of cycle_steps, then beta for the second half (Fu et al., 2019).

    Args:
      config: the run's `TrainConfig`.
      step: the global step, a Python int or an integer tensor (int64 inside
        a tf.function is fine).
    """
    beta = tf.constant(config.beta, tf.float32)
    if config.kl_schedule == "constant":
        return beta
    step = tf.cast(step, tf.int64)
    if config.kl_schedule == "linear":
        progress = tf.cast(step, tf.float32) / float(config.warmup_steps)
    elif config.kl_schedule == "cyclical":
        phase = tf.cast(tf.math.floormod(step, config.cycle_steps), tf.float32) / float(config.cycle_steps)
        progress = phase / _CYCLE_RAMP_FRACTION
    else:
        raise ValueError(f"unknown KL schedule {config.kl_schedule!r}")
    return beta * tf.clip_by_value(progress, 0.0, 1.0)


def training_terms(model, images: tf.Tensor, config: TrainConfig, kl_weight: tf.Tensor, seed: tf.Tensor) -> Terms:
    """The batch-mean loss to differentiate, and the plain terms to log (scalars, nats per image).

    With config.objective == "elbo": loss = mean reconstruction + kl_weight *
    rate, where the reconstruction averages -log p(x|z) over
    config.num_samples draws per image, and the rate is the mean KL (by
    config.kl_estimator), or with config.free_bits > 0 the free-bits rate
    sum_d max(free_bits, mean_batch KL_d).

    With "iwae": loss = -mean IWAE bound with config.iwae_k samples, averaged
    over config.num_samples independent bounds per image (Rainforth et al.,
    2018). The KL weight w enters each log weight as log p(x|z) + w (log p(z)
    - log q(z|x)), so w = 1 is the IWAE bound and a warm-up schedule still
    applies.

    In both cases `reconstruction` and `kl` are the unweighted per-image means
    (free bits and the weight not applied), for logging. With
    config.precision "mixed_*" the networks' layers compute in float16 or
    bfloat16 (`tfvae.precision`); all the terms are float32 either way.

    Args:
      model: a `tfvae.VAE`.
      images: [batch, H, W, C].
      config: the run's `TrainConfig` (objective, samples, estimator, free bits).
      kl_weight: the weight from `kl_weight(config, step)`.
      seed: a stateless seed, shape [2] int, for the draws of z.
    """
    with precision.compute(config.precision):  # the networks' layers only: every term here is float32
        return _training_terms(model, images, config, tf.cast(kl_weight, tf.float32), seed)


def _training_terms(model, images: tf.Tensor, config: TrainConfig, weight: tf.Tensor, seed: tf.Tensor) -> Terms:
    if config.objective == "iwae":
        samples = importance_samples(model, images, [config.num_samples, config.iwae_k], seed)
        bound = log_mean_exp(samples.log_likelihood + weight * samples.log_ratio, axis=1)  # [num_samples, b]
        reconstruction = -tf.reduce_mean(samples.log_likelihood)
        kl = tf.reduce_mean(kl_estimate(samples.posterior, model.prior, samples.z, config.kl_estimator))
        return Terms(loss=-tf.reduce_mean(bound), reconstruction=reconstruction, kl=kl)
    if config.objective != "elbo":
        raise ValueError(f"unknown objective {config.objective!r}")
    samples = importance_samples(model, images, [config.num_samples], seed)
    reconstruction = -tf.reduce_mean(samples.log_likelihood)
    if config.free_bits > 0:
        per_dim = kl_per_dimension(samples.posterior, model.prior, samples.z, config.kl_estimator)
        kl = tf.reduce_mean(tf.reduce_sum(per_dim, axis=-1))
        rate = free_bits_rate(per_dim, config.free_bits)
    else:
        kl = tf.reduce_mean(kl_estimate(samples.posterior, model.prior, samples.z, config.kl_estimator))
        rate = kl
    return Terms(loss=reconstruction + weight * rate, reconstruction=reconstruction, kl=kl)


def finite_flags(terms, gradients) -> tf.Tensor:
    """[len(terms) + 1] bool: each term finite, then all `gradients` finite (`tfvae.train.CHECKED_TERMS`).

    The gradients are checked through the sum of all their entries, one
    read-only pass each (an element-wise `is_finite` wrote a mask and reduced
    it, ~3x the time in an XLA-compiled step): a NaN or an infinity anywhere
    makes the sum NaN or infinite, and a sum of finite entries overflows only
    when the gradients are already ~1e32 or more.
    """
    gradient_sum = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients])
    return tf.stack([tf.reduce_all(tf.math.is_finite(term)) for term in terms] + [tf.math.is_finite(gradient_sum)])


# --------------------------------------------------------------------------- over a dataset
def batch_mean(terms: Terms) -> Terms:
    """Averages per-example terms over the batch."""
    return Terms(*(tf.reduce_mean(term) for term in terms))


def average_over_dataset(model, dataset: tf.data.Dataset, beta: float = 1.0, seed: int = 0) -> Terms:
    """Example-weighted means of the terms over one pass of `dataset`.

    `dataset` yields image batches [b, H, W, C] (or `(images, labels)`). The
    draw of z for batch i uses the stateless seed (seed, i), so the same model
    and data always give the same numbers. Runs as one compiled loop.
    """
    return _average_over_dataset(model, dataset, tf.constant(beta, tf.float32), tf.constant(seed, tf.int32))


def average_over_images(model, images: tf.Tensor, batch_size: int, beta: float = 1.0, seed: int = 0) -> Terms:
    """`average_over_dataset` over `images` [N, H, W, C] held in memory, in batches of `batch_size`, in order.

    The same numbers as over a dataset yielding those batches (the draws for
    batch i use the seed (seed, i)), without a `tf.data` iterator in the
    loop: about half the time for the MNIST test set here.
    """
    return _average_over_images(
        model, tf.convert_to_tensor(images, tf.float32), tf.constant(batch_size, tf.int32),
        tf.constant(beta, tf.float32), tf.constant(seed, tf.int32),
    )


def _batch_sums(model, images: tf.Tensor, beta: tf.Tensor, seed: tf.Tensor, batch_index: tf.Tensor) -> tf.Tensor:
    """[3]: the terms of `negative_elbo` summed over the batch, z drawn with the seed (seed, batch_index)."""
    terms = negative_elbo(model, images, beta, seed=tf.stack([seed, batch_index]))
    return tf.stack([tf.reduce_sum(term) for term in terms])


@tf.function
def _average_over_dataset(model, dataset, beta, seed):
    sums = tf.zeros([3])
    count = tf.constant(0.0)
    batch_index = tf.constant(0, tf.int32)
    for element in dataset:
        images = element[0] if isinstance(element, tuple) else element
        sums += _batch_sums(model, images, beta, seed, batch_index)
        count += tf.cast(tf.shape(images)[0], tf.float32)
        batch_index += 1
    return Terms(*tf.unstack(sums / count))


@tf.function
def _average_over_images(model, images, batch_size, beta, seed):
    count = tf.shape(images)[0]
    sums = tf.zeros([3])
    for batch_index in tf.range((count + batch_size - 1) // batch_size):
        batch = images[batch_index * batch_size : (batch_index + 1) * batch_size]
        sums += _batch_sums(model, batch, beta, seed, batch_index)
    return Terms(*tf.unstack(sums / tf.cast(count, tf.float32)))


__all__ = [
    "ImportanceSamples",
    "Terms",
    "average_over_dataset",
    "average_over_images",
    "batch_mean",
    "finite_flags",
    "free_bits_rate",
    "importance_samples",
    "is_factorised",
    "iwae_bound",
    "kl_divergence",
    "kl_estimate",
    "kl_per_dimension",
    "kl_weight",
    "log_mean_exp",
    "negative_elbo",
    "training_terms",
]
