"""Two stochastic layers (Burda et al., 2015, their second architecture), seen by the objective as one z.

    q(z1, z2 | x) = q(z1|x) q(z2|z1)          p(x, z1, z2) = p(x|z1) p(z1|z2) p(z2),   p(z2) = N(0, I)

with every q and p(z1|z2) a diagonal Normal whose mean and scale come from a
tanh MLP (the head of `nets.Encoder`), and p(x|z1) a `nets.Decoder`. The
objectives (`tfvae.objectives`) see one posterior and one prior over one code,
so both are distributions over the concatenation z = [z1, z2], event
[d1 + d2]: `HierarchicalEncoder()(images)` is q(z|x), `HierarchicalPrior()()`
is p(z), and `HierarchicalDecoder` reads z1 out of z. The rate is then the
Monte Carlo log q(z|x) - log p(z) at the drawn z, which `objectives.rate`
falls back to because TFP has no KL between two `TwoLayerNormal`s;
`layer_rates` splits it into the two layers' terms for logging and figures.

Sizes (`BURDA_LATENT_SIZES`, ...) are those of the paper's released code
(github.com/yburda/iwae, experiments.py, `--layers 2`): x - 200 - 200 - z1
(100) - 100 - 100 - z2 (50) for q, and the mirror for p, tanh throughout.
Their scales are exp(linear); here they are min_scale + exp(linear / 2), as in
`nets.Encoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, nets

tfd = tfp.distributions

BURDA_LATENT_SIZES = (100, 50)  # (z1, z2)
BURDA_ENCODER_HIDDEN = ((200, 200), (100, 100))  # x -> z1, z1 -> z2
BURDA_PRIOR_HIDDEN = (100, 100)  # z2 -> z1
BURDA_DECODER_HIDDEN = (200, 200)  # z1 -> x


# --------------------------------------------------------------------------- the distribution over [z1, z2]
class TwoLayerNormal(tfd.Distribution):
    """first(a) second(b | a) over one vector that concatenates the two layers, event [d_a + d_b].

    `first` is a diagonal Normal (`tfd.Independent` over a `tfd.Normal`, batch
    B, event [d_a]); `second` maps draws a [..., d_a] to a diagonal Normal
    over b, batch [...], event [d_b]. The vector is [a, b], or [b, a] with
    `first_at_end=True`: q(z|x) is (first = q(z1|x), second = q(z2|.)) in
    the order [z1, z2]; p(z) is (first = p(z2), second = p(z1|.)) with
    first_at_end, so it lays out the same [z1, z2].

    - sample(sample_shape, seed): a = loc_a + scale_a * eps_a, then b =
      loc_b(a) + scale_b(a) * eps_b, with eps = [eps_a, eps_b] one Philox
      draw (`tf.random.stateless_normal(alg="philox")`, like
      `model.draw_latents`); reparameterised, so gradients reach both layers'
      networks, the second also through a. `seed` is anything
      `tfp.random.sanitize_seed` takes (a stateless [2] seed, an int, None).
    - log_prob(z) = first.log_prob(a) + second(a).log_prob(b) for z of shape
      [..., *batch, d_a + d_b]; `layer_log_probs` gives the two terms.
    - mean(): not implemented (E[b] = E[loc_b(a)] has no closed form);
      `chained_mean()` is [E a, E(b | a = E a)].

    Why a subclass rather than TFP's pieces: a `JointDistributionSequential`
    over (a, b) pushed through `tfb.Invert(tfb.Split([d_a, d_b]))` samples
    and scores the same, but `tfd.kl_divergence` of two such distributions
    raises ValueError ("Can only compute KL divergence when all
    distributions are independent"), not the NotImplementedError on which
    `objectives.kl_divergence` falls back to the Monte Carlo estimate, and
    its draws use TFP's default stateless sampler, which `model.draw_latents`
    avoids inside XLA on a CPU. Here no KL is registered, so every caller of
    the analytic KL gets log q(z|x) - log p(z) at its draws.
    """

    def __init__(
        self,
        first: tfd.Distribution,
        second: Callable[[tf.Tensor], tfd.Distribution],
        second_size: int,
        first_at_end: bool = False,
        validate_args: bool = False,
        name: str = "TwoLayerNormal",
    ):
        parameters = dict(locals())
        parameters.pop("__class__", None)
        _normal_parts(first, "first")
        if not first.event_shape.is_fully_defined() or first.event_shape.rank != 1:
            raise ValueError(f"first must have an event shape [d], got {first.event_shape}")
        second_size = checks.positive_int(second_size, "second_size")
        self._first, self._second = first, second
        self._first_size, self._second_size = int(first.event_shape[0]), second_size
        self._first_at_end = bool(first_at_end)
        super().__init__(
            dtype=first.dtype,
            reparameterization_type=tfd.FULLY_REPARAMETERIZED,
            validate_args=validate_args,
            allow_nan_stats=True,
            parameters=parameters,
            name=name,
        )

    @property
    def first(self) -> tfd.Distribution:
        """The layer drawn first, e.g. q(z1|x) or p(z2)."""
        return self._first

    def second(self, first_draws: tf.Tensor) -> tfd.Distribution:
        """The other layer given draws of the first, [..., d_first]."""
        distribution = self._second(first_draws)
        _normal_parts(distribution, "second(a)")
        return distribution

    @property
    def block_sizes(self) -> tuple[int, int]:
        """The sizes of the two blocks in the order they sit in z, e.g. (d1, d2)."""
        sizes = (self._first_size, self._second_size)
        return sizes[::-1] if self._first_at_end else sizes

    def split(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """z [..., d1 + d2] -> its two blocks in the order they sit in z."""
        z = tf.convert_to_tensor(z, self.dtype)
        if z.shape.rank is not None and z.shape[-1] is not None and z.shape[-1] != sum(self.block_sizes):
            raise ValueError(f"z must end in {sum(self.block_sizes)} = {self.block_sizes}, got shape {z.shape}")
        front, back = self.block_sizes
        return z[..., :front], z[..., front:]

    def _ordered(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        front, back = self.split(z)
        return (back, front) if self._first_at_end else (front, back)

    def _concat(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.concat([b, a] if self._first_at_end else [a, b], axis=-1)

    def layer_log_probs(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The log-densities of the two blocks of z, in the order they sit in z, each [..., *batch].

        For q(z|x): (log q(z1|x), log q(z2|z1)); for p(z): (log p(z1|z2), log p(z2)).
        """
        a, b = self._ordered(z)
        log_a, log_b = self.first.log_prob(a), self.second(a).log_prob(b)
        return (log_b, log_a) if self._first_at_end else (log_a, log_b)

    def chained_mean(self) -> tf.Tensor:
        """[E a, E(b | a = E a)], [*batch, d1 + d2]: the means taken in turn (not E[z], which has no closed form)."""
        a = self.first.mean()
        return self._concat(a, self.second(a).mean())

    # ------------------------------------------------------------------ tfd.Distribution
    def _batch_shape(self):
        return self.first.batch_shape

    def _batch_shape_tensor(self):
        return self.first.batch_shape_tensor()

    def _event_shape(self):
        return tf.TensorShape([self._first_size + self._second_size])

    def _event_shape_tensor(self):
        return tf.constant([self._first_size + self._second_size], tf.int32)

    def _sample_n(self, n, seed=None):
        seed = tfp.random.sanitize_seed(seed)
        first = self.first.distribution
        loc, scale = tf.convert_to_tensor(first.loc), tf.convert_to_tensor(first.scale)
        batch = self.first.batch_shape_tensor()
        shape = tf.concat([[n], batch, [self._first_size + self._second_size]], axis=0)
        eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype, alg="philox")
        a = loc + scale * eps[..., : self._first_size]
        second = self.second(a).distribution
        b = tf.convert_to_tensor(second.loc) + tf.convert_to_tensor(second.scale) * eps[..., self._first_size :]
        return self._concat(a, b)

    def _log_prob(self, z):
        log_front, log_back = self.layer_log_probs(z)
        return log_front + log_back

    def _mean(self, **kwargs):
        raise NotImplementedError(
            "TwoLayerNormal has no closed-form mean (E[z2] = E[loc(z1)]); use chained_mean() or average samples"
        )


def _normal_parts(distribution, what: str) -> None:
    if not (isinstance(distribution, tfd.Independent) and type(distribution.distribution) is tfd.Normal):
        raise ValueError(f"{what} must be a diagonal Normal (tfd.Independent over tfd.Normal), got {distribution!r}")


# --------------------------------------------------------------------------- networks
def _check_sizes(latent_sizes: Sequence[int]) -> tuple[int, int]:
    sizes = tuple(latent_sizes)
    if len(sizes) != 2 or not all(checks.is_positive_int(size) for size in sizes):
        raise ValueError(f"latent_sizes must be two positive integers (z1, z2), got {list(sizes)}")
    return sizes


def _check_hidden(hidden_sizes: Sequence[int], what: str) -> tuple[int, ...]:
    sizes = tuple(hidden_sizes)
    if not sizes or not all(checks.is_positive_int(size) for size in sizes):
        raise ValueError(f"{what} must list one or more positive integers, got {list(sizes)}")
    return sizes


class ConditionalNormal(snt.Module):
    """u [..., n_in] -> a diagonal Normal over [..., latent_size]: `nets.Encoder`'s MLP and head on flat rows.

    The leading axes (draws, batch) are flattened into one, so that k draws
    cost one matrix product per layer, and restored on the mean and scale.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        latent_size: int,
        activation: str = "tanh",
        min_scale: float = 1e-4,
        name: str = "conditional_normal",
    ):
        super().__init__(name=name)
        self.latent_size = latent_size
        self.network = nets.Encoder(
            _check_hidden(hidden_sizes, "hidden_sizes"), latent_size, activation, min_scale, name="network"
        )

    def __call__(self, inputs: tf.Tensor) -> tfd.Distribution:
        """inputs [..., n_in] -> Normal, batch [...], event [latent_size]."""
        leading = tf.shape(inputs)[:-1]
        # As a batch of 1 x 1 "images" of n_in channels: what `nets.Encoder` takes (and flattens again).
        normal = self.network(tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])).distribution
        shape = tf.concat([leading, [self.latent_size]], axis=0)
        loc, scale = tf.reshape(normal.loc, shape), tf.reshape(normal.scale, shape)
        return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


class HierarchicalEncoder(snt.Module):
    """q(z|x) = q(z1|x) q(z2|z1) over z = [z1, z2]: images [b, H, W, C] -> `TwoLayerNormal`, batch [b].

    Args:
      latent_sizes: (d1, d2).
      hidden_sizes: the hidden layers of (x -> z1, z1 -> z2).
      activation, min_scale: as for `nets.Encoder`.

    `q_z1` (a `nets.Encoder`) and `q_z2` (a `ConditionalNormal`) are the two layers' networks.
    """

    def __init__(
        self,
        latent_sizes: Sequence[int] = BURDA_LATENT_SIZES,
        hidden_sizes: Sequence[Sequence[int]] = BURDA_ENCODER_HIDDEN,
        activation: str = "tanh",
        min_scale: float = 1e-4,
        name: str = "hierarchical_encoder",
    ):
        super().__init__(name=name)
        self.latent_sizes = _check_sizes(latent_sizes)
        self.latent_size = sum(self.latent_sizes)
        if len(hidden_sizes) != 2:
            raise ValueError(f"hidden_sizes must give two networks' layers (x -> z1, z1 -> z2), got {hidden_sizes}")
        d1, d2 = self.latent_sizes
        bottom = _check_hidden(hidden_sizes[0], "hidden_sizes[0]")
        self.q_z1 = nets.Encoder(bottom, d1, activation, min_scale, name="q_z1")
        self.q_z2 = ConditionalNormal(hidden_sizes[1], d2, activation, min_scale, name="q_z2")

    def __call__(self, images: tf.Tensor) -> TwoLayerNormal:
        """images [b, H, W, C] -> q(z|x), batch [b], event [d1 + d2]."""
        return TwoLayerNormal(self.q_z1(images), self.q_z2, second_size=self.latent_sizes[1])


class HierarchicalPrior(snt.Module):
    """p(z) = p(z2) p(z1|z2) over z = [z1, z2], with p(z2) = N(0, I): `prior()` -> `TwoLayerNormal`, batch [].

    Args:
      latent_sizes: (d1, d2).
      hidden_sizes: the hidden layers of z2 -> z1.
      activation, min_scale: as for `nets.Encoder`.

    `p_z1` (a `ConditionalNormal`) is the learned network. The distribution
    calls it whenever it is used, so one `prior()` stays valid as the weights change.
    """

    def __init__(
        self,
        latent_sizes: Sequence[int] = BURDA_LATENT_SIZES,
        hidden_sizes: Sequence[int] = BURDA_PRIOR_HIDDEN,
        activation: str = "tanh",
        min_scale: float = 1e-4,
        name: str = "hierarchical_prior",
    ):
        super().__init__(name=name)
        self.latent_sizes = _check_sizes(latent_sizes)
        self.latent_size = sum(self.latent_sizes)
        self.p_z1 = ConditionalNormal(hidden_sizes, self.latent_sizes[0], activation, min_scale, name="p_z1")

    def __call__(self) -> TwoLayerNormal:
        """p(z), batch [], event [d1 + d2]."""
        d1, d2 = self.latent_sizes
        top = tfd.Independent(tfd.Normal(loc=tf.zeros([d2]), scale=tf.ones([d2])), reinterpreted_batch_ndims=1)
        return TwoLayerNormal(top, self.p_z1, second_size=d1, first_at_end=True)


class HierarchicalDecoder(snt.Module):
    """p(x|z) = p(x|z1): a `nets.Decoder` on the first d1 entries of z [..., d1 + d2].

    Args:
      output_shape: the image shape (H, W, C).
      latent_sizes: (d1, d2).
      hidden_sizes: hidden layers of z1 -> x.
      activation, likelihood, normal_scale: as for `nets.Decoder`.
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_sizes: Sequence[int] = BURDA_LATENT_SIZES,
        hidden_sizes: Sequence[int] = BURDA_DECODER_HIDDEN,
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        normal_scale: float | str = "learned",
        name: str = "hierarchical_decoder",
    ):
        super().__init__(name=name)
        self.latent_sizes = _check_sizes(latent_sizes)
        self.latent_size = sum(self.latent_sizes)
        self.p_x = nets.Decoder(
            _check_hidden(hidden_sizes, "hidden_sizes"), output_shape, activation, likelihood, normal_scale, name="p_x"
        )
        self.output_shape = self.p_x.output_shape
        self.likelihood = self.p_x.likelihood

    def __call__(self, z: tf.Tensor) -> tfd.Distribution:
        """z [..., d1 + d2] -> p(x|z1), batch [...], event [H, W, C]."""
        if z.shape.rank is not None and z.shape[-1] != self.latent_size:
            raise ValueError(f"z must end in d1 + d2 = {self.latent_size}, got shape {z.shape}")
        return self.p_x(z[..., : self.latent_sizes[0]])


def build_two_layer(
    image_shape: Sequence[int],
    latent_sizes: Sequence[int] = BURDA_LATENT_SIZES,
    encoder_hidden: Sequence[Sequence[int]] = BURDA_ENCODER_HIDDEN,
    prior_hidden: Sequence[int] = BURDA_PRIOR_HIDDEN,
    decoder_hidden: Sequence[int] = BURDA_DECODER_HIDDEN,
    activation: str = "tanh",
    likelihood: str = "bernoulli",
    normal_scale: float | str = "learned",
    min_scale: float = 1e-4,
) -> tuple[HierarchicalEncoder, HierarchicalDecoder, HierarchicalPrior]:
    """Burda et al.'s two-layer model (by default) for images of `image_shape`: (encoder, decoder, prior module)."""
    encoder = HierarchicalEncoder(latent_sizes, encoder_hidden, activation, min_scale)
    decoder = HierarchicalDecoder(image_shape, latent_sizes, decoder_hidden, activation, likelihood, normal_scale)
    prior = HierarchicalPrior(latent_sizes, prior_hidden, activation, min_scale)
    return encoder, decoder, prior


# --------------------------------------------------------------------------- the two layers' KL terms
class LayerRates(NamedTuple):
    """The rate log q(z|x) - log p(z) at z, split by layer; each [..., b], nats. They sum to the rate."""

    z1: tf.Tensor  # log q(z1|x) - log p(z1|z2)
    z2: tf.Tensor  # log q(z2|z1) - log p(z2)


def layer_rates(posterior: TwoLayerNormal, prior: TwoLayerNormal, z: tf.Tensor) -> LayerRates:
    """The two layers' terms of the Monte Carlo rate at draws z [..., b, d1 + d2] of `posterior`.

    Their means over draws estimate E_q[log q(z1|x) - log p(z1|z2)] and
    E_q[log q(z2|z1) - log p(z2)] = E_q(z1|x) KL(q(z2|z1) || p(z2)).
    """
    for what, distribution in (("posterior", posterior), ("prior", prior)):
        if not isinstance(distribution, TwoLayerNormal):
            raise ValueError(f"layer_rates needs two TwoLayerNormal distributions; the {what} is {distribution!r}")
    if posterior.block_sizes != prior.block_sizes:
        raise ValueError(f"posterior and prior split z differently: {posterior.block_sizes} vs {prior.block_sizes}")
    q1, q2 = posterior.layer_log_probs(z)
    p1, p2 = prior.layer_log_probs(z)
    return LayerRates(z1=q1 - p1, z2=q2 - p2)



def two_layer_parts(config, image_shape: Sequence[int], parts: dict) -> dict:
    """The two-layer architecture's family builder (`tfvae.families`): encoder, decoder and prior, x-hidden-z1
    (latent_size)-top_hidden-z2 (top_latent_size), the decoder mirroring the hidden sizes."""
    encoder, decoder, prior = build_two_layer(
        image_shape, (config.latent_size, config.top_latent_size), (config.hidden_sizes, config.top_hidden_sizes),
        config.top_hidden_sizes, tuple(reversed(config.hidden_sizes)), config.activation, config.likelihood,
        config.normal_scale, config.min_scale,
    )
    return {**parts, "encoder": encoder, "decoder": decoder, "prior": prior}


__all__ = [
    "BURDA_DECODER_HIDDEN",
    "BURDA_ENCODER_HIDDEN",
    "BURDA_LATENT_SIZES",
    "BURDA_PRIOR_HIDDEN",
    "ConditionalNormal",
    "HierarchicalDecoder",
    "HierarchicalEncoder",
    "HierarchicalPrior",
    "LayerRates",
    "TwoLayerNormal",
    "build_two_layer",
    "two_layer_parts",
    "layer_rates",
]
