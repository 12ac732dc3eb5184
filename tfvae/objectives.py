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

from tfvae.kl import (  # the rate (re-exported: tfvae.objectives.rate, ...)
    free_bits_rate,
    is_factorised,
    kl_divergence,
    kl_per_dimension,
    mean_over_draws,
    rate,
)
from tfvae.model import as_images, draw_latents
from tfvae.tc import (  # the total correlation (re-exported)
    AggregateLogDensities,
    KLDecomposition,
    aggregate_log_densities,
    kl_decomposition,
    total_correlation,
)

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
    prior: tfd.Distribution  # p(z), evaluated once (a learned prior runs its networks once)

    @property
    def log_weights(self) -> tf.Tensor:
        """log p(x, z) / q(z|x), [*sample_shape, b]: the importance weights of log p(x)."""
        return self.log_likelihood + self.log_ratio


def importance_samples(
    model, images: tf.Tensor, sample_shape, seed: tf.Tensor | None = None, posterior: tfd.Distribution | None = None,
    prior: tfd.Distribution | None = None,
) -> ImportanceSamples:
    """Draws z of `sample_shape` per image from q(z|x) (reparameterised) and scores them.

    Args:
      model: anything with `encode`, `decode` and `prior` (a `tfvae.VAE`).
      images: [b, H, W, C].
      sample_shape: draws per image, e.g. [k] or [n, k].
      seed: a stateless seed, [2] int, or None for TensorFlow's stateful draws.
      posterior, prior: q(z|x) of `images` and p(z) when the caller has them
        already (one encoding, and one run of a learned prior's networks, for
        many chunks of draws); made here otherwise.

    The decoder runs once on all draws together ([*sample_shape, b, latent]),
    so k draws cost one large matrix product per layer, not k small ones.
    """
    images = as_images(images)  # array-likes and uint8 (free for a float32 tensor)
    if posterior is None:
        posterior = model.encode(images)
    z = draw_latents(posterior, sample_shape, seed)
    log_likelihood = model.decode(z).log_prob(images)
    prior = model.prior if prior is None else prior
    log_ratio = prior.log_prob(z) - posterior.log_prob(z)
    return ImportanceSamples(posterior, z, log_likelihood, log_ratio, prior)


def sample_rate(samples: ImportanceSamples, estimator: str = "analytic") -> tf.Tensor:
    """`rate` from `importance_samples`, reusing its log p(z) - log q(z|x) at the draws (a flow's log q at
    its own draws is cheap; recomputing it at a copy of them would run the flow's inverse)."""
    if estimator == "analytic":
        try:
            return tfd.kl_divergence(samples.posterior, samples.prior)
        except NotImplementedError:
            pass
    elif estimator != "monte_carlo":
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'analytic' or 'monte_carlo'")
    return mean_over_draws(-samples.log_ratio, samples.posterior)


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
    kl = sample_rate(samples, kl_estimator)
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
    tc_weight: float = 1.0,
) -> Terms:
    """Batch means (scalars, nats per image) of the beta-weighted negative ELBO, the loss to differentiate.

    loss = mean distortion + beta * mean rate, with the distortion averaged
    over `num_samples` draws per image, or with `free_bits` > 0 the rate
    replaced by `free_bits_rate` (each dimension's batch-mean KL floored).
    With `tc_weight` != 1 the weighted rate adds (tc_weight - 1) *
    `total_correlation` of the batch's draws, so loss = distortion + beta *
    (rate + (tc_weight - 1) * TC): beta-TCVAE (Chen et al., 2018) with the
    mutual information and dimension-wise terms at weight beta and the total
    correlation at beta * tc_weight; a KL warm-up (beta from 0) ramps all
    three together. `distortion` and `rate` are the plain means (no floor,
    no weight).
    """
    samples = importance_samples(model, images, [num_samples], seed)
    distortion = -tf.reduce_mean(samples.log_likelihood)
    if free_bits > 0:
        per_dim = kl_per_dimension(samples.posterior, samples.prior, samples.z, kl_estimator)
        kl = tf.reduce_mean(tf.reduce_sum(per_dim, axis=-1))
        penalty = free_bits_rate(per_dim, free_bits)
    else:
        kl = tf.reduce_mean(sample_rate(samples, kl_estimator))
        penalty = kl
    loss = distortion + beta * penalty
    if tc_weight != 1:
        loss += beta * (tc_weight - 1.0) * total_correlation(samples.posterior, samples.z)
    return Terms(loss=loss, distortion=distortion, rate=kl)


def iwae_loss(
    model,
    images: tf.Tensor,
    seed: tf.Tensor,
    *,
    k: int,
    num_samples: int = 1,
    kl_weight: tf.Tensor | float = 1.0,
    kl_estimator: str = "analytic",
    gradient: str = "plain",
) -> Terms:
    """Batch means of the negative IWAE bound with k samples, averaged over `num_samples` independent bounds.

    The weight w enters each log weight as log p(x|z) + w (log p(z) - log
    q(z|x)): w = 1 is the IWAE bound (Burda et al., 2015), and a KL warm-up
    still applies; several bounds per image follow Rainforth et al. (2018).
    `gradient` "dreg" keeps the loss's value and gives it the doubly
    reparameterised gradient (`_dreg_loss`). `distortion` and `rate` are
    the plain means over all draws, for logging.
    """
    if gradient not in ("plain", "dreg"):
        raise ValueError(f"unknown IWAE gradient {gradient!r}; use 'plain' or 'dreg'")
    if gradient == "dreg":
        samples, loss = _dreg_loss(model, images, seed, [num_samples, k], kl_weight)
    else:
        samples = importance_samples(model, images, [num_samples, k], seed)
        loss = -tf.reduce_mean(log_mean_exp(samples.log_likelihood + kl_weight * samples.log_ratio, axis=1))
    distortion = -tf.reduce_mean(samples.log_likelihood)
    kl = tf.reduce_mean(sample_rate(samples, kl_estimator))
    return Terms(loss=loss, distortion=distortion, rate=kl)


def _dreg_loss(model, images: tf.Tensor, seed, sample_shape, kl_weight) -> tuple[ImportanceSamples, tf.Tensor]:
    """The batch-mean negative IWAE bound over draws [n, k, b] whose gradient is DReG's (Tucker et al., 2019).

    With normalised weights v_i = w_i / sum_j w_j over the k draws and the
    KL weight beta in log w_i = log p(x|z_i) + beta (log p(z_i) - log
    q(z_i|x)), the encoder's gradient is sum_i ((1 - beta) v_i + beta v_i^2)
    (d log w_i / d z_i) dz_i/dphi, with q(z|x)'s own parameters held fixed
    in log w: the score term -beta sum_i v_i d log q(z_i|x)/dphi becomes
    its reparameterised twin -beta sum_i v_i (1 - v_i) (d log w_i / d z_i)
    dz_i/dphi, so beta = 1 gives Tucker et al.'s sum_i v_i^2 (...). The
    decoder, the prior, and a prior's direct use of the encoder (VampPrior)
    get the IWAE gradient sum_i v_i grad log w_i. As a surrogate:
    sum_i sg(v_i) log w_i + beta sg(v_i^2 - v_i) sg(g_i) . z_i, with g_i =
    d log w_i / d z_i from an inner tape (one more backward pass through
    the decoder to z). Its value is replaced by the bound's. Needs a Normal
    (or Independent Normal) posterior.
    """
    images = as_images(images)
    posterior = model.encode(images)
    z = draw_latents(posterior, sample_shape, seed)
    prior, held = model.prior, _stopped_posterior(posterior)
    with tf.GradientTape() as tape:
        tape.watch(z)
        log_likelihood = model.decode(z).log_prob(images)
        log_weights = log_likelihood + kl_weight * (prior.log_prob(z) - held.log_prob(z))  # [n, k, b]
        total = tf.reduce_sum(log_weights)
    score = tf.stop_gradient(tape.gradient(total, z))  # [n, k, b, d]: d log w_i / d z_i
    normalised = tf.stop_gradient(tf.nn.softmax(log_weights, axis=1))
    path = tf.reduce_sum(score * z, axis=-1)  # its gradient: sg(g_i) dz_i
    reparameterised_score = kl_weight * (normalised**2 - normalised) * path  # -beta sum_i v_i dlog q(z_i|x)/dphi
    surrogate = -tf.reduce_mean(tf.reduce_sum(normalised * log_weights + reparameterised_score, axis=1))
    value = -tf.reduce_mean(log_mean_exp(log_weights, axis=1))
    samples = ImportanceSamples(posterior, z, log_likelihood, prior.log_prob(z) - posterior.log_prob(z), prior)
    return samples, tf.stop_gradient(value) + surrogate - tf.stop_gradient(surrogate)


def _stopped_posterior(posterior: tfd.Distribution) -> tfd.Distribution:
    """`posterior` with its parameters behind `tf.stop_gradient` (Normal or Independent(Normal, 1))."""
    if isinstance(posterior, tfd.Independent):
        inner = _stopped_posterior(posterior.distribution)
        return tfd.Independent(inner, reinterpreted_batch_ndims=posterior.reinterpreted_batch_ndims)
    if isinstance(posterior, tfd.Normal):
        return tfd.Normal(tf.stop_gradient(posterior.loc), tf.stop_gradient(posterior.scale))
    raise ValueError(f"DReG gradients need a Normal posterior; got {type(posterior).__name__}")


__all__ = [
    "AggregateLogDensities",
    "ImportanceSamples",
    "KLDecomposition",
    "Terms",
    "aggregate_log_densities",
    "elbo_loss",
    "free_bits_rate",
    "importance_samples",
    "is_factorised",
    "iwae_bound",
    "iwae_loss",
    "kl_decomposition",
    "kl_divergence",
    "kl_per_dimension",
    "log_mean_exp",
    "negative_elbo",
    "rate",
    "sample_rate",
    "total_correlation",
]
