"""Disentangling objectives: what DIP-VAE, the capacity-controlled beta-VAE and FactorVAE change in the ELBO.

Each is the beta-VAE's batch loss, distortion + beta * rate (nats per image, `tfvae.objectives`), with one term
changed or added:

    DIP-VAE (Kumar et al., 2018)       distortion + beta * rate + lambda_od * sum_{i != j} Cov_ij^2
                                                                 + lambda_d * sum_i (Cov_ii - 1)^2
    capacity (Burgess et al., 2018)    distortion + gamma * |rate - C(step)|,  C from 0 to C_max over N steps
    FactorVAE (Kim & Mnih, 2018)       distortion + beta * rate + gamma * E_q(z)[log D(z) - log(1 - D(z))]

DIP-VAE-I's Cov is the covariance over the batch of the posterior means, Cov_p(x)[mu(x)]; DIP-VAE-II's is the
aggregate posterior's, Cov[mu(x)] + E[diag sigma^2(x)] (their eq. 6 and 7), as disentanglement_lib computes
them (population covariance, 1/M). The penalty is added to the batch-mean loss, not to each image's.

FactorVAE's D is a `Discriminator`: an MLP from a code to 2 logits, class 0 "drawn from q(z)", class 1 "drawn
from prod_d q(z_d)". Codes of the second kind are the batch's codes with each latent dimension permuted across
the batch on its own (`permute_dimensions`, their Algorithm 1), which keeps every dimension's marginal and
breaks the dependence between dimensions. With D the probability of class 0, log D(z) - log(1 - D(z)) is the
difference of the two logits, a density-ratio estimate of log q(z) / prod_d q(z_d), whose mean over q(z) is the
total correlation (`density_ratio_tc`). D is trained by cross-entropy on the batch's own codes and their
permutation (`discriminator_loss`), as disentanglement_lib does: the same batch, not a second one (Kim & Mnih
draw a second batch for D's permuted codes; here a batch of M images gives D M codes of each kind, so a step
reads one batch whatever the objective, and the pass order is that of every other run).

Where D lives. It is neither part of the model nor owned by the loss:

- not the model's: the model is the generative model (`tfvae.protocol`), what `open_run`, `evaluate` and
  `export` read; D is a training device, like the optimizer, and would otherwise be trained by the model's
  optimizer on the model's loss;
- not the loss's: the losses here are pure functions of their arguments, like every objective; D is one of
  them (`factor_vae_losses(model, discriminator, images, seed, ...)`), as the model is.

`tfvae.step` holds D and its own optimizer together as an `Adversary`, trained in the same step as the model,
from the same codes: one forward pass gives the model's loss and D's loss, the model's gradients are taken of
the first (through z into the encoder, with D's weights fixed) and D's of the second (the codes held fixed),
and both updates follow the finiteness check. `fit` builds the adversary beside the optimizer and puts D and
its optimizer's slots into the run's checkpoint, so a resumed run equals an uninterrupted one.

References:
  Kumar, Sattigeri & Balakrishnan (2018). Variational inference of disentangled latent concepts from unlabeled
    observations. ICLR.
  Burgess et al. (2018). Understanding disentangling in beta-VAE. arXiv:1804.03599.
  Kim & Mnih (2018). Disentangling by factorising. ICML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, objectives
from tfvae.objectives import Terms

tfd = tfp.distributions

# Kim & Mnih (2018), appendix: the discriminator is 6 fully connected layers, 1000 units each but the output,
# leaky ReLU with slope 0.2; Adam with learning rate 1e-4, beta1 0.5, beta2 0.9.
DISCRIMINATOR_HIDDEN_SIZES = (1000,) * 5
LEAKY_RELU_SLOPE = 0.2
DISCRIMINATOR_ADAM_BETAS = (0.5, 0.9)
DIP_KINDS = ("i", "ii")


# --------------------------------------------------------------------------- DIP-VAE
def posterior_moments(posterior: tfd.Distribution) -> tuple[tf.Tensor, tf.Tensor]:
    """The means and variances of a diagonal Normal q(z|x): two [b, latent] tensors.

    Raises:
      ValueError: for a posterior that is not a Normal (or an Independent over one).
    """
    normal = posterior.distribution if isinstance(posterior, tfd.Independent) else posterior
    if not isinstance(normal, tfd.Normal):
        raise ValueError(f"DIP-VAE needs a diagonal Normal posterior (its means and variances); got {posterior!r}")
    loc = tf.convert_to_tensor(normal.loc)
    scale = tf.broadcast_to(tf.convert_to_tensor(normal.scale), tf.shape(loc))
    return loc, tf.square(scale)


def dip_covariance(means: tf.Tensor, variances: tf.Tensor | None = None) -> tf.Tensor:
    """The covariance DIP-VAE penalises, [d, d]: of the means [M, d] over the batch, plus the mean of `variances`.

    DIP-VAE-I: `dip_covariance(mu)` = (1/M) sum_m (mu_m - mean mu)(mu_m - mean mu)^T, the population
    covariance of the posterior means. DIP-VAE-II: `dip_covariance(mu, sigma^2)` adds diag((1/M) sum_m
    sigma_m^2), which makes it the covariance of the batch's mixture of posteriors (the aggregate posterior).
    """
    means = tf.convert_to_tensor(means)
    centred = means - tf.reduce_mean(means, axis=0, keepdims=True)
    covariance = tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(means)[0], means.dtype)
    if variances is not None:
        covariance += tf.linalg.diag(tf.reduce_mean(tf.cast(variances, means.dtype), axis=0))
    return covariance


def dip_penalty(covariance: tf.Tensor, lambda_offdiag: float, lambda_diag: float) -> tf.Tensor:
    """lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2, a scalar: 0 for Cov = I.

    Kumar et al. (2018), eq. 6 (DIP-VAE-I) and 7 (DIP-VAE-II): the distance of Cov from the prior's identity
    covariance, with the off-diagonal and the diagonal entries weighted apart.
    """
    diagonal = tf.linalg.diag_part(covariance)
    off_diagonal = covariance - tf.linalg.diag(diagonal)
    return lambda_offdiag * tf.reduce_sum(tf.square(off_diagonal)) + lambda_diag * tf.reduce_sum(
        tf.square(diagonal - 1.0)
    )


def dip_lambda_diag(kind: str, lambda_offdiag: float, lambda_diag: float | None = None) -> float:
    """The diagonal weight in effect: `lambda_diag` when given, else disentanglement_lib's choice,
    10 * lambda_offdiag for DIP-VAE-I and lambda_offdiag for DIP-VAE-II (Kumar et al. use lambda_d = 10 lambda_od
    and lambda_d = lambda_od respectively)."""
    if kind not in DIP_KINDS:
        raise ValueError(f"DIP-VAE is 'i' or 'ii'; got {kind!r}")
    if lambda_diag is not None:
        return float(lambda_diag)
    return 10.0 * lambda_offdiag if kind == "i" else float(lambda_offdiag)


# --------------------------------------------------------------------------- controlled capacity
def capacity(step, capacity_max: float, capacity_steps: int) -> tf.Tensor:
    """The capacity C at global step `step`, nats (a float32 scalar): C_max * min(1, step / capacity_steps).

    Burgess et al. (2018), section 5: C grows linearly from 0 at step 0 to C_max at step capacity_steps, then
    stays there. `step` is a Python int or an integer tensor.

    Raises:
      ValueError: one line naming capacity_max (below zero, or not a finite number) or capacity_steps (not a
        positive integer).
    """
    checks.non_negative_number(capacity_max, "capacity_max")
    checks.positive_int(capacity_steps, "capacity_steps")
    progress = tf.cast(step, tf.float32) / float(capacity_steps)
    return tf.constant(capacity_max, tf.float32) * tf.minimum(progress, 1.0)


def capacity_term(rate: tf.Tensor, target: tf.Tensor, gamma: float) -> tf.Tensor:
    """gamma * |rate - target|: the rate's term in the capacity-controlled loss, nats per image (gamma >= 0)."""
    checks.non_negative_number(gamma, "gamma")
    return gamma * tf.abs(rate - target)


# --------------------------------------------------------------------------- FactorVAE
class Discriminator(snt.Module):
    """FactorVAE's D: codes [b, latent] -> logits [b, 2] (class 0: from q(z); class 1: dimensions permuted).

    An MLP with `hidden_sizes` leaky-ReLU layers (slope 0.2) and a linear output of 2 logits (Kim & Mnih,
    2018: five hidden layers of 1000 units).
    """

    def __init__(self, hidden_sizes: Sequence[int] = DISCRIMINATOR_HIDDEN_SIZES, name: str = "discriminator"):
        super().__init__(name=name)
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        self._mlp = snt.nets.MLP(
            [*hidden_sizes, 2], activation=lambda x: tf.nn.leaky_relu(x, alpha=LEAKY_RELU_SLOPE), name="mlp"
        )

    def __call__(self, codes: tf.Tensor) -> tf.Tensor:
        """codes [b, latent] -> logits [b, 2]."""
        return self._mlp(codes)


def check_batch(codes: tf.Tensor) -> None:
    """A ValueError naming data.batch_size when `codes` [b, latent] is known to hold fewer than 2 codes."""
    batch = codes.shape[0] if codes.shape.rank else None
    if batch is not None and batch < 2:
        raise ValueError(
            f"data.batch_size must be >= 2 for FactorVAE (train.factor_weight > 0): its discriminator compares "
            f"codes with their permutation across the batch, and a batch of {batch} has none; got a batch of {batch}"
        )


def permute_dimensions(codes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each latent dimension of `codes` [b, latent] permuted across the batch on its own: [b, latent].

    Column j of the result is column j of `codes` in the order argsort(u_j), u_j uniform draws from the
    stateless `seed` ([2] int): every column keeps its values (so each dimension's marginal), and the columns
    are shuffled independently of each other, which makes the rows draws from the product of the marginals
    (Kim & Mnih, 2018, Algorithm 1).

    Raises:
      ValueError: for a batch known to hold fewer than 2 codes (`check_batch`).
    """
    codes = tf.convert_to_tensor(codes)
    check_batch(codes)
    shape = tf.shape(codes)
    order = tf.argsort(tf.random.stateless_uniform(shape, seed), axis=0)  # [b, latent]: a permutation per column
    flat_index = order * shape[1] + tf.range(shape[1])[tf.newaxis, :]
    return tf.gather(tf.reshape(codes, [-1]), flat_index)


def density_ratio_tc(logits: tf.Tensor) -> tf.Tensor:
    """The mean of log D(z) - log(1 - D(z)) = logit_0 - logit_1 over codes z ~ q(z), a scalar in nats.

    With D(z) the softmax probability of class 0, an optimal D has D / (1 - D) = q(z) / prod_d q(z_d), so the
    mean over the batch's codes estimates the total correlation KL(q(z) || prod_d q(z_d)) (Kim & Mnih, 2018,
    eq. 3). It can come out negative.
    """
    return tf.reduce_mean(logits[..., 0] - logits[..., 1])


def discriminator_loss(code_logits: tf.Tensor, permuted_logits: tf.Tensor) -> tf.Tensor:
    """D's cross-entropy, nats per code (a scalar): 0.5 * (mean -log D(z) + mean -log(1 - D(z_permuted))).

    code_logits: D's logits [b, 2] at codes from q(z), whose class is 0; permuted_logits: at permuted codes
    [b', 2], whose class is 1. log 2 for a D that cannot tell them apart.
    """
    return 0.5 * (
        -tf.reduce_mean(tf.nn.log_softmax(code_logits)[..., 0])
        - tf.reduce_mean(tf.nn.log_softmax(permuted_logits)[..., 1])
    )


# --------------------------------------------------------------------------- batch losses to train on
def _beta_vae_terms(model, images, seed, num_samples: int, kl_estimator: str):
    """Draws, and the batch means of the distortion and the rate (nats per image), as `objectives.elbo_loss`."""
    samples = objectives.importance_samples(model, images, [num_samples], seed)
    distortion = -tf.reduce_mean(samples.log_likelihood)
    rate = tf.reduce_mean(objectives.sample_rate(samples, kl_estimator))
    return samples, distortion, rate


def dip_vae_loss(
    model, images: tf.Tensor, seed: tf.Tensor, *, kind: str, lambda_offdiag: float, lambda_diag: float,
    beta: tf.Tensor | float = 1.0, num_samples: int = 1, kl_estimator: str = "analytic",
) -> Terms:
    """Batch means (scalars, nats per image): loss = distortion + beta * rate + `dip_penalty` of the batch.

    kind "i" penalises `dip_covariance` of the posterior means, "ii" that of the means and variances
    (Kumar et al., 2018). `distortion` and `rate` are the plain means.
    """
    if kind not in DIP_KINDS:
        raise ValueError(f"DIP-VAE is 'i' or 'ii'; got {kind!r}")
    samples, distortion, rate = _beta_vae_terms(model, images, seed, num_samples, kl_estimator)
    means, variances = posterior_moments(samples.posterior)
    covariance = dip_covariance(means, variances if kind == "ii" else None)
    loss = distortion + beta * rate + dip_penalty(covariance, lambda_offdiag, lambda_diag)
    return Terms(loss=loss, distortion=distortion, rate=rate)


def capacity_loss(
    model, images: tf.Tensor, seed: tf.Tensor, *, target: tf.Tensor | float, gamma: float, num_samples: int = 1,
    kl_estimator: str = "analytic",
) -> Terms:
    """Batch means (scalars, nats per image): loss = distortion + `capacity_term`(rate, target, gamma).

    Burgess et al. (2018), eq. 8, with the rate the batch-mean KL (as disentanglement_lib's AnnealedVAE) and
    `target` the capacity C of the step (`capacity`).
    """
    _, distortion, rate = _beta_vae_terms(model, images, seed, num_samples, kl_estimator)
    return Terms(loss=distortion + capacity_term(rate, target, gamma), distortion=distortion, rate=rate)


class FactorVAELosses(NamedTuple):
    """What one FactorVAE step differentiates: the model's terms and the discriminator's loss (scalars, nats)."""

    terms: Terms  # loss = distortion + beta * rate + gamma * density_ratio_tc
    discriminator: tf.Tensor  # `discriminator_loss`, to differentiate for D's weights only


def factor_vae_losses(
    model, discriminator: snt.Module, images: tf.Tensor, seed: tf.Tensor, *, gamma: float,
    beta: tf.Tensor | float = 1.0, num_samples: int = 1, kl_estimator: str = "analytic",
) -> FactorVAELosses:
    """The model's loss distortion + beta * rate + gamma * TC_D(z) and D's loss, from one draw of codes.

    The codes z ~ q(z|x) of the batch (all `num_samples` draws of every image, [num_samples * b, latent]) go
    through `discriminator` once for the TC estimate, whose gradient reaches the encoder through z; D's loss
    scores those logits as class 0 and the codes permuted (`permute_dimensions`, held fixed, with a seed folded
    from `seed`) as class 1. Differentiate `terms.loss` for the model's weights and `discriminator` for D's
    only (`tfvae.step` does): D's loss must not move the encoder, nor the model's loss D.
    """
    samples, distortion, rate = _beta_vae_terms(model, images, seed, num_samples, kl_estimator)
    codes = tf.reshape(samples.z, [-1, samples.z.shape[-1]])
    check_batch(codes)
    code_logits = discriminator(codes)
    permuted = permute_dimensions(tf.stop_gradient(codes), tf.random.experimental.stateless_fold_in(seed, 1))
    loss = distortion + beta * rate + gamma * density_ratio_tc(code_logits)
    return FactorVAELosses(
        terms=Terms(loss=loss, distortion=distortion, rate=rate),
        discriminator=discriminator_loss(code_logits, discriminator(permuted)),
    )


__all__ = [
    "DIP_KINDS",
    "DISCRIMINATOR_ADAM_BETAS",
    "DISCRIMINATOR_HIDDEN_SIZES",
    "Discriminator",
    "FactorVAELosses",
    "capacity",
    "capacity_loss",
    "capacity_term",
    "check_batch",
    "density_ratio_tc",
    "dip_covariance",
    "dip_lambda_diag",
    "dip_penalty",
    "dip_vae_loss",
    "discriminator_loss",
    "factor_vae_losses",
    "permute_dimensions",
]
