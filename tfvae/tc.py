"""The total correlation of the aggregate posterior and the decomposition of the rate it comes from (Chen et
al., 2018), estimated from a minibatch: what beta-TCVAE weights, and a disentanglement number.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks
from tfvae.kl import factorised_parts, is_factorised

tfd = tfp.distributions


# --------------------------------------------------------------------------- beta-TCVAE
#
# Chen et al. (2018) split the rate, averaged over the data, into three terms
# of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n):
#
#   E_x KL(q(z|x) || p(z)) = I_q(x; z)                        index-code mutual information
#                            + KL(q(z) || prod_d q(z_d))       total correlation (TC)
#                            + sum_d KL(q(z_d) || p(z_d))      dimension-wise KL
#
# and estimate log q(z) from a minibatch. beta-TCVAE weights the TC by beta.
class AggregateLogDensities(NamedTuple):
    """Minibatch estimates at draws z_i ~ q(z|x_i), each [..., M], nats."""

    joint: tf.Tensor  # log q(z_i)
    marginals: tf.Tensor  # sum_d log q(z_id)


def aggregate_log_densities(
    posterior: tfd.Distribution, z: tf.Tensor, dataset_size: int | None = None
) -> AggregateLogDensities:
    """log q(z_i) and sum_d log q(z_id) of the aggregate posterior, from one batch's posterior and draws.

    With M the batch size and log q(z_i | x_j) scored for every pair:

        log q(z_i)    ~ logsumexp_j log q(z_i | x_j)    - log(M) - log(N)
        log q(z_id)   ~ logsumexp_j log q(z_id | x_jd)  - log(M) - log(N)

    which is the minibatch-weighted sampling (MWS) estimator of Chen et al.
    (2018) with N = `dataset_size` (their reference code's
    `- math.log(batch_size * dataset_size)`). With `dataset_size=None` the
    log(N) is left out: q(z) is then the batch's own mixture (1/M) sum_j
    q(z|x_j), which converges to the aggregate posterior as M grows. The two
    differ by a constant (log N in `joint`, d log N in `marginals`), so they
    have the same gradients; only the second's value estimates the densities
    (MWS's total correlation exceeds it by (d - 1) log N: 99 nats for d = 10
    and N = 60,000).

    Args:
      posterior: q(z|x) of the batch, factorised: `tfd.Independent` over one
        axis, batch [M], event [d] (what `nets.Encoder` returns).
      z: draws from it, [..., M, d]; each leading index is its own set of draws.
      dataset_size: N, the number of examples the batches come from, or None.

    Memory: a [..., M, M, d] tensor of pairwise log-densities.

    Raises:
      ValueError: for a posterior that is not factorised with batch [M], or N < 1.
    """
    factors = factorised_parts(posterior)
    if factors is None or posterior.batch_shape.rank != 1:
        raise ValueError(
            "the aggregate posterior's estimate needs q(z|x) factorised over the latent dimensions "
            f"(tfd.Independent(d, 1)) with batch [M]; got {posterior!r}"
        )
    if dataset_size is not None:
        checks.positive_int(dataset_size, "dataset_size")
    z = tf.convert_to_tensor(z, posterior.dtype)
    pairs = factors.log_prob(z[..., :, tf.newaxis, :])  # [..., M (i), M (j), d]: log q(z_id | x_j)
    log_weight = -tf.math.log(tf.cast(tf.shape(pairs)[-2], pairs.dtype))
    if dataset_size is not None:
        log_weight -= tf.math.log(tf.cast(dataset_size, pairs.dtype))
    joint = tf.reduce_logsumexp(tf.reduce_sum(pairs, axis=-1), axis=-1) + log_weight
    marginals = tf.reduce_sum(tf.reduce_logsumexp(pairs, axis=-2) + log_weight, axis=-1)
    return AggregateLogDensities(joint=joint, marginals=marginals)


def total_correlation(posterior: tfd.Distribution, z: tf.Tensor, dataset_size: int | None = None) -> tf.Tensor:
    """The total correlation KL(q(z) || prod_d q(z_d)) estimated from one batch, a scalar in nats.

    The mean over the draws z_i ~ q(z|x_i) of log q(z_i) - sum_d log q(z_id),
    with both estimated by `aggregate_log_densities` (see there for
    `dataset_size`: an integer N gives the minibatch-weighted sampling
    estimate of Chen et al. (2018), which carries the constant (d - 1) log N;
    None gives the same gradient and an estimate of the TC's value). Either
    can come out slightly negative for a small batch.
    """
    densities = aggregate_log_densities(posterior, z, dataset_size)
    return tf.reduce_mean(densities.joint - densities.marginals)


class KLDecomposition(NamedTuple):
    """The three terms of the batch's rate (Chen et al., 2018, eq. 2), scalars in nats; they sum to it."""

    mutual_information: tf.Tensor  # mean_i log q(z_i|x_i) - log q(z_i)
    total_correlation: tf.Tensor  # mean_i log q(z_i) - sum_d log q(z_id)
    dimension_kl: tf.Tensor  # mean_i sum_d log q(z_id) - log p(z_i)


def kl_decomposition(
    posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor, dataset_size: int | None = None
) -> KLDecomposition:
    """Index-code mutual information, total correlation and dimension-wise KL at draws z [..., M, d].

    All three use the same estimates of log q(z) and sum_d log q(z_d)
    (`aggregate_log_densities`), so they add up to the batch mean of log
    q(z|x) - log p(z) at z, the Monte Carlo rate, whatever `dataset_size`
    (its log N moves from one term to another). beta-TCVAE's loss per batch
    is distortion + alpha * MI + beta * TC + gamma * dimension KL; the
    paper's reference code (rtqichen/beta-tcvae, vae_quant.py) trains alpha =
    gamma = 1, which is distortion + Monte Carlo rate + (beta - 1) * TC.

    Raises:
      ValueError: when posterior or prior is not factorised over the latent dimensions.
    """
    if not is_factorised(prior):
        raise ValueError(f"the dimension-wise KL needs a factorised prior (tfd.Independent(d, 1)); got {prior!r}")
    densities = aggregate_log_densities(posterior, z, dataset_size)
    z = tf.convert_to_tensor(z, posterior.dtype)
    return KLDecomposition(
        mutual_information=tf.reduce_mean(posterior.log_prob(z) - densities.joint),
        total_correlation=tf.reduce_mean(densities.joint - densities.marginals),
        dimension_kl=tf.reduce_mean(densities.marginals - prior.log_prob(z)),
    )


__all__ = ["AggregateLogDensities", "KLDecomposition", "aggregate_log_densities", "kl_decomposition",
           "total_correlation"]
