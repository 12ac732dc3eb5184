"""The rate: KL(q(z|x) || p(z)) in closed form where TFP has it, else by Monte Carlo at the draws of z; per
latent dimension for a factorised posterior and prior; free bits.

Nats per example, pure functions of distributions (and draws), nothing read from a config. `tfvae.objectives`
puts the rate into the bounds; `tfvae.tc` splits its average over the data.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


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
    closed_form = _closed_form(posterior, prior, estimator)
    if closed_form is not None:
        return closed_form
    return mean_over_draws(posterior.log_prob(z) - prior.log_prob(z), posterior)


def _closed_form(q: tfd.Distribution, p: tfd.Distribution, estimator: str) -> tf.Tensor | None:
    """TFP's KL(q || p) for the "analytic" estimator where TFP has one; None where the draws must serve
    ("monte_carlo", or no closed form).

    Raises:
      ValueError: an unknown estimator.
    """
    if estimator not in ("analytic", "monte_carlo"):
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'analytic' or 'monte_carlo'")
    if estimator == "analytic":
        try:
            return tfd.kl_divergence(q, p)
        except NotImplementedError:
            pass
    return None


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
    q_factors, p_factors = factorised_parts(posterior), factorised_parts(prior)
    if q_factors is None or p_factors is None:
        raise ValueError(
            "KL per latent dimension needs posterior and prior of the form tfd.Independent(d, 1) with one factor "
            f"per dimension; got {type(posterior).__name__} and {type(prior).__name__}"
        )
    closed_form = _closed_form(q_factors, p_factors, estimator)
    if closed_form is not None:
        return closed_form
    if z is None:
        raise ValueError("a Monte Carlo KL needs the draws z")
    return mean_over_draws(q_factors.log_prob(z) - p_factors.log_prob(z), posterior, event_ndims=1)


def is_factorised(distribution: tfd.Distribution) -> bool:
    """True when `distribution` is Independent over one axis (one factor per latent dimension)."""
    return factorised_parts(distribution) is not None


def free_bits_rate(kl_per_dim: tf.Tensor, floor: float) -> tf.Tensor:
    """The free-bits rate (Kingma et al., 2016, eq. 15): sum_d max(floor, mean_batch KL_d), a scalar in nats.

    Args:
      kl_per_dim: [batch, latent] KL of each example and latent dimension.
      floor: nats per dimension, >= 0. A dimension whose batch-mean KL is
        below the floor contributes the constant floor (and no gradient).
    """
    return tf.reduce_sum(tf.maximum(tf.cast(floor, kl_per_dim.dtype), tf.reduce_mean(kl_per_dim, axis=0)))


def factorised_parts(distribution: tfd.Distribution) -> tfd.Distribution | None:
    if not isinstance(distribution, tfd.Independent):
        return None
    # A Python int, so that autograph leaves this `if` alone inside tf.function.
    ndims = tf.get_static_value(tf.convert_to_tensor(distribution.reinterpreted_batch_ndims))
    return distribution.distribution if ndims == 1 else None


def mean_over_draws(values: tf.Tensor, posterior: tfd.Distribution, event_ndims: int = 0) -> tf.Tensor:
    """Averages the leading draw axes of `values` away, down to the posterior's batch (+ event) rank."""
    extra = values.shape.rank - posterior.batch_shape.rank - event_ndims
    return tf.reduce_mean(values, axis=list(range(extra))) if extra > 0 else values


__all__ = ["factorised_parts", "free_bits_rate", "is_factorised", "kl_divergence", "kl_per_dimension",
           "mean_over_draws", "rate"]
