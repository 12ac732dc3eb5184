"""The VAE objective: the negative evidence lower bound, with a KL weight.

    -ELBO_beta(x) = -E_q(z|x)[log p(x|z)] + beta * KL(q(z|x) || p(z))

The first term is the distortion (reconstruction cost), the second the rate.
beta = 1 is the ELBO of Kingma & Welling (2014); other values give the
beta-VAE of Higgins et al. (2017). All terms are in nats per example: summed
over pixels and latent dimensions; `batch_mean` averages over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Terms(NamedTuple):
    """The terms of the objective, each [batch] (per example) or a scalar (mean)."""

    loss: tf.Tensor  # reconstruction + beta * kl, nats
    reconstruction: tf.Tensor  # -log p(x|z) at one z ~ q(z|x), nats
    kl: tf.Tensor  # KL(q(z|x) || p(z)), nats


def kl_divergence(posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """KL(q || p) per example [batch]: analytic where TFP has it, else log q(z) - log p(z) at z."""
    try:
        return tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        return posterior.log_prob(z) - prior.log_prob(z)


def negative_elbo(model, images: tf.Tensor, beta: float = 1.0, seed: tf.Tensor | None = None) -> Terms:
    """Per-example terms [batch] of the beta-weighted negative ELBO.

    Args:
      model: a `tfvae.VAE` (anything whose call returns a `VAEOutput`).
      images: [batch, H, W, C], values the likelihood can score.
      beta: weight of the KL term, >= 0.
      seed: optional stateless seed (shape [2] int) for the draw of z.
    """
    output = model(images, seed=seed)
    reconstruction = -output.likelihood.log_prob(images)
    kl = kl_divergence(output.posterior, model.prior, output.z)
    return Terms(loss=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


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


@tf.function
def _average_over_dataset(model, dataset, beta, seed):
    sums = tf.zeros([3])
    count = tf.constant(0.0)
    batch_index = tf.constant(0, tf.int32)
    for element in dataset:
        images = element[0] if isinstance(element, tuple) else element
        terms = negative_elbo(model, images, beta, seed=tf.stack([seed, batch_index]))
        sums += tf.stack([tf.reduce_sum(term) for term in terms])
        count += tf.cast(tf.shape(images)[0], tf.float32)
        batch_index += 1
    return Terms(*tf.unstack(sums / count))
