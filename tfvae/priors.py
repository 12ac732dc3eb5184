"""Learned priors p(z): Sonnet modules whose `__call__()` returns the distribution.

A VAE's prior is either a fixed `tfd.Distribution` (the standard Normal of
`tfvae.model.standard_normal_prior`) or one of these modules: calling it with
no arguments builds p(z) from the module's current variables, a distribution
over z with event shape [latent_size] and empty batch shape. Build it afresh
wherever it is used (inside the tape, inside the compiled step), so that its
log-density follows the variables as they train.

- `MixturePrior`: a learned mixture of K diagonal Gaussians,
      p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)),
  with pi = softmax(logits): the learned mixture prior of TFP's example VAE
  (tensorflow_probability/examples/vae.py), here with a floor on the scales.
- `VampPrior`: the "variational mixture of posteriors" of Tomczak & Welling
  (2018), p(z) = (1/K) sum_k q(z | u_k), with K learned pseudo-inputs
  u_k passed through the very encoder that encodes the data (shared weights).

Units: z is in the encoder's latent units (what q(z|x) is a density over);
locations and scales are in those units, scales are standard deviations (not
variances), and `log_prob` is in nats (summed over the latent dimensions).
TFP has no analytic KL from a diagonal Normal to a mixture, so with either
prior the rate is the Monte Carlo estimate log q(z|x) - log p(z) at the drawn
z (`tfvae.objectives.kl_divergence` falls back to it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks

tfd = tfp.distributions

# Floor on a mixture component's standard deviation. A component whose scale
# shrinks towards 0 makes log p(z) unbounded at its centre, and a posterior
# can then collapse onto it; at 1e-3 a component is worth at most
# -log(1e-3 sqrt(2 pi)) = 5.99 nats per latent dimension (the same floor as a
# learned Normal pixel scale in `tfvae.nets`).
DEFAULT_MIN_SCALE = 1e-3
# Standard deviation of the initial component locations, in latent units: the
# components start distinct (symmetry broken) but overlapping, each of scale 1
# around the origin, so p(z) begins near the N(0, I) it replaces (a variance
# of about 1 + 0.5^2 per coordinate).
DEFAULT_INIT_LOC_STDDEV = 0.5
# The pseudo-inputs' initial values, N(0.05, 0.01^2) before the clip to
# [0, 1]: what the paper's reference code (github.com/jmtomczak/vae_vampprior,
# utils/load_data.py) uses for binary MNIST and OMNIGLOT, tfvae's default data.
# Its grey-level datasets use means 0.4 to 0.5 (std 0.01 to 0.02).
DEFAULT_PSEUDO_INPUT_MEAN = 0.05
DEFAULT_PSEUDO_INPUT_STDDEV = 0.01


class MixturePrior(snt.Module):
    """p(z) = sum_k softmax(logits)_k N(z; loc_k, diag(scale_k^2)), event [latent_size], batch [].

    Variables (float32, all trainable):
      logits: [num_components], the unnormalised log mixture weights; start
        at 0 (equal weights 1/K).
      loc: [num_components, latent_size], the component means in latent
        units; start N(0, init_loc_stddev^2), drawn with `tf.random.normal`
        (so `tf.random.set_seed` decides them).
      raw_scale: [num_components, latent_size]; the standard deviations are
        scale = min_scale + softplus(raw_scale), positive and at least
        `min_scale` by construction; they start at exactly 1.

    Args:
      latent_size: d, the dimension of z.
      num_components: K, the number of Gaussians.
      min_scale: the floor on every standard deviation, > 0 (latent units).
      init_loc_stddev: standard deviation of the initial locations, >= 0.
    """

    def __init__(
        self,
        latent_size: int,
        num_components: int,
        *,
        min_scale: float = DEFAULT_MIN_SCALE,
        init_loc_stddev: float = DEFAULT_INIT_LOC_STDDEV,
        name: str = "mixture_prior",
    ):
        super().__init__(name=name)
        self.latent_size = checks.positive_int(latent_size, "latent_size")
        self.num_components = checks.positive_int(num_components, "num_components")
        self.min_scale = checks.positive_number(min_scale, "min_scale")
        init_loc_stddev = checks.non_negative_number(init_loc_stddev, "init_loc_stddev")
        shape = [self.num_components, self.latent_size]
        self.logits = tf.Variable(tf.zeros([self.num_components]), name="logits")
        self.loc = tf.Variable(tf.random.normal(shape, stddev=init_loc_stddev), name="loc")
        start = float(tfp.math.softplus_inverse(1.0 - self.min_scale))
        self.raw_scale = tf.Variable(tf.fill(shape, start), name="raw_scale")

    @property
    def scale(self) -> tf.Tensor:
        """The components' standard deviations, [num_components, latent_size], >= min_scale."""
        return self.min_scale + tf.nn.softplus(self.raw_scale)

    @property
    def mixture_weights(self) -> tf.Tensor:
        """pi = softmax(logits), [num_components], summing to 1."""
        return tf.nn.softmax(self.logits)

    def __call__(self) -> tfd.Distribution:
        """The prior at the current variables: a `tfd.MixtureSameFamily`, batch [], event [latent_size]."""
        components = tfd.Independent(tfd.Normal(loc=self.loc, scale=self.scale), reinterpreted_batch_ndims=1)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=self.logits), components)


class VampPrior(snt.Module):
    """p(z) = (1/K) sum_k q(z | u_k) (Tomczak & Welling, 2018), event [latent], batch [].

    The K pseudo-inputs u_k are images of `image_shape` made from one
    trainable variable, u = clip(raw_pseudo_inputs, 0, 1): the hardtanh to
    the pixel range [0, 1] of the paper's reference code (a raw value outside
    [0, 1] gets no gradient, as there). They go through `encoder`, the same
    module (and so the same weights) that encodes the data, in one batch of
    K, and the mixture weights are fixed and equal.

    Variables: `raw_pseudo_inputs`, [K, H, W, C], starting N(init_mean,
    init_stddev^2) drawn with `tf.random.normal` (so `tf.random.set_seed`
    decides them), plus the encoder's own (tracked through `self.encoder`, so
    `trainable_variables` and a checkpoint of this module include them).

    Args:
      encoder: the VAE's encoder, images [b, H, W, C] -> q(z|x) with batch
        [b] and event [latent] (any `tfvae.nets` encoder).
      image_shape: (H, W, C) of the data, positive.
      num_pseudo_inputs: K > 0 (the paper uses 500 on MNIST).
      init_mean, init_stddev: the raw pseudo-inputs' initial distribution,
        in pixel units ([0, 1]); see `DEFAULT_PSEUDO_INPUT_MEAN`.
    """

    def __init__(
        self,
        encoder: Callable[[tf.Tensor], tfd.Distribution],
        image_shape: Sequence[int],
        num_pseudo_inputs: int,
        *,
        init_mean: float = DEFAULT_PSEUDO_INPUT_MEAN,
        init_stddev: float = DEFAULT_PSEUDO_INPUT_STDDEV,
        name: str = "vamp_prior",
    ):
        super().__init__(name=name)
        if not callable(encoder):
            raise ValueError(f"encoder must be callable (images -> q(z|x)), got {type(encoder).__name__}")
        self.image_shape = checks.image_shape(image_shape)
        self.num_pseudo_inputs = checks.positive_int(num_pseudo_inputs, "num_pseudo_inputs")
        init_mean = checks.finite_number(init_mean, "init_mean")
        init_stddev = checks.non_negative_number(init_stddev, "init_stddev")
        self.encoder = encoder
        self.latent_size = getattr(encoder, "latent_size", None)
        start = tf.random.normal([self.num_pseudo_inputs, *self.image_shape], mean=float(init_mean), stddev=init_stddev)
        self.raw_pseudo_inputs = tf.Variable(start, name="raw_pseudo_inputs")

    @property
    def pseudo_inputs(self) -> tf.Tensor:
        """u = clip(raw_pseudo_inputs, 0, 1), [K, H, W, C], images in the pixel range."""
        return tf.clip_by_value(self.raw_pseudo_inputs, 0.0, 1.0)

    def __call__(self) -> tfd.Distribution:
        """The prior at the current variables: a `tfd.MixtureSameFamily` of the K posteriors q(z | u_k)."""
        components = self.encoder(self.pseudo_inputs)
        if components.batch_shape.rank != 1 or components.event_shape.rank != 1:
            raise ValueError(
                "encoder must return q(z|x) with batch [K] and event [latent] for K pseudo-inputs, got batch "
                f"{components.batch_shape} and event {components.event_shape}"
            )
        logits = tf.zeros([self.num_pseudo_inputs], dtype=components.dtype)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)



def mixture_parts(config, image_shape: Sequence[int], parts: dict) -> dict:
    """The mixture prior's family builder (`tfvae.families`)."""
    return {**parts, "prior": MixturePrior(config.latent_size, config.prior_components)}


def vamp_parts(config, image_shape: Sequence[int], parts: dict) -> dict:
    """The VampPrior's family builder (`tfvae.families`): pseudo-inputs through the encoder built before it."""
    return {**parts, "prior": VampPrior(parts["encoder"], image_shape, config.prior_components)}


__all__ = ["MixturePrior", "VampPrior", "mixture_parts", "vamp_parts"]
