"""Sonnet networks that return distributions.

Encoders map images [b, H, W, C] to the amortised posterior q(z|x), a
diagonal Normal with event shape [latent_size]; decoders map latent codes
[..., latent_size] to the likelihood p(x|z), one distribution per pixel with
event shape [H, W, C] (Kingma & Welling, 2014, appendix C). Each comes as an
MLP (`Encoder`, `Decoder`) and as a small convolutional network
(`ConvEncoder`, `ConvDecoder`) that takes its shapes from the data (28x28x1,
32x32x3, any H x W). Parameters are created from the first input's shape,
except the learned per-pixel scale of a Normal likelihood, which exists from
construction.

Likelihoods (`LIKELIHOODS`), all over pixels in [0, 1]:

- "bernoulli": Bernoulli(logits); the cross-entropy of binary images.
- "continuous_bernoulli": ContinuousBernoulli(logits) (Loaiza-Ganem &
  Cunningham, 2019), a normalised density on [0, 1] for grey images.
- "normal": Normal(sigmoid(output), s) with s fixed or learned per pixel.
  The classic "MSE + KL" loss is this likelihood with a fixed s: per image
  -log p(x|z) = sum_pixels (x - mean)^2 / (2 s^2) + D log(s sqrt(2 pi)), so a
  sum of squared errors with weight 1 equals s^2 = 1/2 plus a constant, and a
  mean squared error (divided by D pixels) equals s^2 = D / 2. A smaller s
  weighs reconstruction more against the KL term, like beta < 1.

`build_encoder(config, image_shape)` and `build_decoder(config, image_shape)`
build the pair a `ModelConfig` describes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, precision
from tfvae.pixels import as_codes, as_images, scale_pixels  # (as_images, as_codes: re-exported)
from tfvae.config import ModelConfig

__all__ = ["ACTIVATIONS", "LIKELIHOODS", "activation_fn", "as_images", "as_codes", "checked_images",
    "checked_codes", "Encoder", "ConvEncoder", "LogitBernoulli", "PixelLikelihood", "Decoder", "ConvDecoder",
    "build_encoder", "build_decoder"]

tfb = tfp.bijectors
tfd = tfp.distributions

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": tf.nn.relu,
    "tanh": tf.nn.tanh,
    "elu": tf.nn.elu,
    "gelu": tf.nn.gelu,
    "softplus": tf.nn.softplus,
    "sigmoid": tf.nn.sigmoid,
}
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")


# Weights uniform on +-1/sqrt(fan_in), biases 0. This is PyTorch's nn.Linear
# weight init, used by the classic walkthroughs; with Sonnet's default
# (truncated Normal, std 1/sqrt(fan_in)) the 784-400-20 VAE ended 10 epochs
# about 0.2 nats worse on test (mean of 3 seeds each, measured here).
def _weight_init() -> snt.initializers.Initializer:
    return snt.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


# Upper clip on the posterior log-variance: exp(0.5 * 20) ~ 2e4 is far past
# any useful scale, and stops a runaway unit from overflowing to inf.
_MAX_LOG_VARIANCE = 20.0
# Floor on a learned Normal pixel scale. Pixels that are constant in the data
# (MNIST's borders) otherwise drive their scale, and the density, without
# bound; at 1e-3 such a pixel is worth at most -log(1e-3 sqrt(2 pi)) = 5.99 nats.
_MIN_PIXEL_SCALE = 1e-3
_KERNEL_SIZE = 4  # stride-2 convolutions with 4x4 kernels halve (or double) H and W exactly


def activation_fn(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The activation function called `name` (see `ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# --------------------------------------------------------------------------- inputs
def _shape_text(shape) -> str:
    return str(tuple(shape.as_list() if isinstance(shape, tf.TensorShape) else shape))


def checked_images(encoder: snt.Module, images) -> tf.Tensor:
    """`as_images(images)` after checking [batch, H, W, C] with the (H, W, C) of `encoder`'s first input.

    The shapes are static, so the check runs when a function is traced, not
    at every step.
    """
    images = as_images(images)
    shape = images.shape
    built = getattr(encoder, "_input_image_shape", None)
    if shape.rank is not None and shape.rank != 4:
        expected = f" of shape {_shape_text(built)}" if built is not None else ""
        raise ValueError(f"this encoder takes a batch of images [batch, height, width, channels]{expected}; "
                         f"got an array of shape {_shape_text(shape)}")
    if built is None:
        encoder._input_image_shape = shape[1:]  # a TensorShape: not tracked by checkpoints
    elif not built.is_compatible_with(shape[1:]):
        raise ValueError(f"this encoder was built for images of shape {_shape_text(built)}; "
                         f"got {_shape_text(shape[1:])}")
    return images


def checked_codes(decoder: snt.Module, z) -> tf.Tensor:
    """`as_codes(z)` after checking its last axis against the code size of `decoder`'s first input."""
    z = as_codes(z)
    if z.shape.rank == 0:
        raise ValueError("this decoder takes latent codes [..., latent_size]; got a scalar")
    size = z.shape[-1] if z.shape.rank is not None else None
    built = getattr(decoder, "_input_code_size", None)
    if built is None:
        if size is not None:
            decoder._input_code_size = int(size)
    elif size is not None and size != built:
        raise ValueError(f"this decoder was built for codes of size {built}; got codes of shape {_shape_text(z.shape)}")
    return z


# --------------------------------------------------------------------------- posterior
def _posterior_head(latent_size: int, min_scale: float, deterministic: bool) -> snt.Linear:
    checks.positive_int(latent_size, "latent_size")
    checks.positive_number(min_scale, "min_scale")
    if deterministic:
        return snt.Linear(latent_size, w_init=_weight_init(), name="loc")
    return snt.Linear(2 * latent_size, w_init=_weight_init(), name="loc_and_log_variance")


def _posterior(head_outputs: tf.Tensor, min_scale: float, deterministic: bool) -> tfd.Distribution:
    """Head outputs [b, 2 * latent] (or [b, latent] when deterministic) -> q(z|x), batch [b], event [latent].

    The standard deviation is min_scale + exp(log_variance / 2) (log-variance
    clipped above), positive and bounded away from zero by construction. A
    deterministic head gives only the mean; the scale is min_scale.
    """
    if deterministic:
        loc = head_outputs
        scale = tf.fill(tf.shape(loc), tf.constant(min_scale, loc.dtype))
    else:
        loc, log_variance = tf.split(head_outputs, 2, axis=-1)
        scale = min_scale + tf.exp(0.5 * tf.minimum(log_variance, _MAX_LOG_VARIANCE))
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


class Encoder(snt.Module):
    """q(z|x): flatten, MLP, then a linear head for the mean and log-variance.

    With `deterministic=True` the head outputs only the mean and the scale is
    fixed at `min_scale`: q(z|x) = N(f(x), min_scale^2 I), a point mass for
    every practical purpose (z = f(x) +- 1e-4). This is the encoder of the
    plain autoencoder baseline (train.beta = 0). It stays a Normal rather than
    a `tfd.Deterministic` so that nothing downstream needs a special case:
    the analytic KL, free bits, the IWAE bound and importance-sampled log p(x)
    all remain defined (the KL is large, about latent_size * (-log min_scale
    - 1/2) + |f(x)|^2 / 2 nats, and is logged but weighted by beta = 0; log
    p(x) of such a model is a valid but very loose estimate, as it should be).
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        latent_size: int,
        activation: str = "relu",
        min_scale: float = 1e-4,
        deterministic: bool = False,
        name: str = "encoder",
    ):
        super().__init__(name=name)
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.latent_size = latent_size
        self._min_scale, self._deterministic = min_scale, deterministic
        self._head = _posterior_head(latent_size, min_scale, deterministic)
        self._torso = snt.Sequential(
            [
                snt.Flatten(),
                snt.nets.MLP(
                    list(hidden_sizes), w_init=_weight_init(), activation=activation_fn(activation), activate_final=True
                ),
            ]
        )

    def __call__(self, images: tf.Tensor) -> tfd.Distribution:
        """images: [batch, H, W, C] in [0, 1] (or uint8, see `as_images`) -> q(z|x), batch [batch], event [latent_size]."""
        images = checked_images(self, images)
        return _posterior(precision.run(images, self._torso, self._head), self._min_scale, self._deterministic)


class ConvEncoder(snt.Module):
    """q(z|x): stride-2 convolutions, flatten, MLP, then the same head as `Encoder`.

    Each of `channels` is a 4x4 convolution with stride 2 ("SAME" padding), so
    28x28 becomes 14x14 then 7x7, and 32x32 becomes 16x16 then 8x8.
    """

    def __init__(
        self,
        channels: Sequence[int],
        hidden_sizes: Sequence[int],
        latent_size: int,
        activation: str = "relu",
        min_scale: float = 1e-4,
        deterministic: bool = False,
        name: str = "conv_encoder",
    ):
        super().__init__(name=name)
        if not channels:
            raise ValueError("channels must list at least one convolution")
        checks.positive_ints(channels, "channels")
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.latent_size = latent_size
        self._min_scale, self._deterministic = min_scale, deterministic
        self._head = _posterior_head(latent_size, min_scale, deterministic)
        act = activation_fn(activation)
        layers = []
        for index, size in enumerate(channels):
            layers += [snt.Conv2D(size, _KERNEL_SIZE, stride=2, w_init=_weight_init(), name=f"conv_{index}"), act]
        mlp = snt.nets.MLP(list(hidden_sizes), w_init=_weight_init(), activation=act, activate_final=True)
        layers += [snt.Flatten(), mlp]
        self._torso = snt.Sequential(layers)

    def __call__(self, images: tf.Tensor) -> tfd.Distribution:
        """images: [batch, H, W, C] in [0, 1] (or uint8, see `as_images`) -> q(z|x), batch [batch], event [latent_size]."""
        images = checked_images(self, images)
        return _posterior(precision.run(images, self._torso, self._head), self._min_scale, self._deterministic)


# --------------------------------------------------------------------------- likelihood
class LogitBernoulli(tfd.Bernoulli):
    """`tfd.Bernoulli(logits=...)` whose log_prob is x * logits - softplus(logits).

    The same values as TFP's (which computes softplus(logits) and
    softplus(-logits) and mixes them), with one transcendental pass per pixel
    instead of two: the per-pixel log-density dominates importance-sampled
    log p(x) as much as the decoder's matrix products do. Finite logits only.
    """

    def _log_prob(self, event):
        logits = tf.convert_to_tensor(self._logits)
        return tf.cast(event, logits.dtype) * logits - tf.math.softplus(logits)


@snt.allow_empty_variables  # stateless unless the Normal scale is learned
class PixelLikelihood(snt.Module):
    """Decoder outputs [..., H, W, C] -> p(x|z), batch [...], event [H, W, C].

    Args:
      likelihood: one of `LIKELIHOODS` (see the module docstring).
      image_shape: (H, W, C).
      normal_scale: for "normal" only: a fixed standard deviation > 0, or
        "learned" for one trainable scale per pixel (softplus plus a floor of
        1e-3, starting at 1), shared by all z.
    """

    def __init__(
        self,
        likelihood: str,
        image_shape: Sequence[int],
        normal_scale: float | str = "learned",
        name: str = "likelihood",
    ):
        super().__init__(name=name)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; known: {', '.join(LIKELIHOODS)}")
        self.likelihood = likelihood
        self.image_shape = checks.image_shape(image_shape)
        self._fixed_scale = None
        if likelihood == "normal":
            if normal_scale == "learned":
                start = tf.fill(self.image_shape, float(tfp.math.softplus_inverse(1.0 - _MIN_PIXEL_SCALE)))
                self.raw_scale = tf.Variable(start, name="raw_pixel_scale")
            elif checks.is_positive_number(normal_scale):
                self._fixed_scale = float(normal_scale)
            else:
                raise ValueError(f"normal_scale must be a number > 0 or 'learned', got {normal_scale!r}")

    def scale(self) -> tf.Tensor:
        """The Normal likelihood's pixel standard deviations, [H, W, C] (or a scalar when fixed)."""
        if self._fixed_scale is not None:
            return tf.constant(self._fixed_scale)
        return _MIN_PIXEL_SCALE + tf.nn.softplus(self.raw_scale)

    def __call__(self, outputs: tf.Tensor) -> tfd.Distribution:
        """outputs [..., H, W, C] -> p(x|z), batch [...], event [H, W, C].

        The pixels' distribution is built over the flattened image, [..., H*W*C]
        (`result.distribution.distribution`), and reshaped to [H, W, C] by a
        `tfb.Reshape`: XLA computes the per-pixel log-density and its gradient
        several times faster over [b, H*W*C] than over [..., H, W, C] on a CPU
        (measured in benchmarks/README.md).
        """
        pixels_per_image = math.prod(self.image_shape)
        flat = tf.reshape(outputs, tf.concat([tf.shape(outputs)[:-3], [pixels_per_image]], axis=0))
        if self.likelihood == "bernoulli":
            pixels = LogitBernoulli(logits=flat, dtype=flat.dtype)
        elif self.likelihood == "continuous_bernoulli":
            pixels = tfd.ContinuousBernoulli(logits=flat)
        else:
            pixels = tfd.Normal(loc=tf.sigmoid(flat), scale=tf.reshape(self.scale(), [-1]))
        image = tfb.Reshape(event_shape_out=self.image_shape, event_shape_in=[pixels_per_image])
        return tfd.TransformedDistribution(tfd.Independent(pixels, reinterpreted_batch_ndims=1), image)


def _flatten_leading(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """z [..., n] -> ([prod(...), n], the leading shape): one big matmul instead of a batched one."""
    leading = tf.shape(z)[:-1]
    return tf.reshape(z, [-1, z.shape[-1]]), leading


class Decoder(snt.Module):
    """p(x|z): MLP to one output per pixel, reshaped to the image shape, then the likelihood.

    Args:
      hidden_sizes: hidden layer widths, from the latent side.
      output_shape: the image shape (H, W, C).
      activation: name of the hidden activation.
      likelihood, normal_scale: see `PixelLikelihood`.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        output_shape: Sequence[int],
        activation: str = "relu",
        likelihood: str = "bernoulli",
        normal_scale: float | str = "learned",
        name: str = "decoder",
    ):
        super().__init__(name=name)
        self.output_shape = checks.image_shape(output_shape, "output_shape")
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.likelihood = PixelLikelihood(likelihood, self.output_shape, normal_scale)
        self._network = snt.nets.MLP(
            [*hidden_sizes, math.prod(self.output_shape)], w_init=_weight_init(), activation=activation_fn(activation)
        )

    def __call__(self, z: tf.Tensor) -> tfd.Distribution:
        """z: [..., latent_size] -> p(x|z), batch [...], event [H, W, C]."""
        flat_z, leading = _flatten_leading(checked_codes(self, z))
        outputs = tf.reshape(precision.run(flat_z, self._network), tf.concat([leading, self.output_shape], axis=0))
        return self.likelihood(outputs)


class ConvDecoder(snt.Module):
    """p(x|z): MLP, a linear map to a small feature map, stride-2 transposed convolutions, the likelihood.

    With n = len(channels), the feature map starts at ceil(H / 2^n) x
    ceil(W / 2^n) with channels[0] channels; each further entry of `channels`
    is a 4x4 transposed convolution with stride 2, and a last one maps to C
    outputs per pixel. The result is cropped to H x W (28 -> 7 -> 14 -> 28; 30
    -> 8 -> 16 -> 32, cropped to 30).
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        output_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        normal_scale: float | str = "learned",
        name: str = "conv_decoder",
    ):
        super().__init__(name=name)
        self.output_shape = checks.image_shape(output_shape, "output_shape")
        if not channels:
            raise ValueError("channels must list at least one feature map")
        checks.positive_ints(channels, "channels")
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        height, width, image_channels = self.output_shape
        factor = 2 ** len(channels)
        self._start_shape = (-(-height // factor), -(-width // factor), int(channels[0]))
        act = activation_fn(activation)
        layers = [
            snt.nets.MLP(
                [*hidden_sizes, math.prod(self._start_shape)],
                w_init=_weight_init(),
                activation=act,
                activate_final=True,
            ),
            snt.Reshape(self._start_shape),
        ]
        for index, size in enumerate([*channels[1:], image_channels]):
            layers.append(
                snt.Conv2DTranspose(size, _KERNEL_SIZE, stride=2, w_init=_weight_init(), name=f"deconv_{index}")
            )
            if index < len(channels) - 1:
                layers.append(act)
        self._network = snt.Sequential(layers)
        self.likelihood = PixelLikelihood(likelihood, self.output_shape, normal_scale)

    def __call__(self, z: tf.Tensor) -> tfd.Distribution:
        """z: [..., latent_size] -> p(x|z), batch [...], event [H, W, C]."""
        flat_z, leading = _flatten_leading(checked_codes(self, z))
        height, width, _ = self.output_shape
        outputs = precision.run(flat_z, self._network)[:, :height, :width, :]
        return self.likelihood(tf.reshape(outputs, tf.concat([leading, self.output_shape], axis=0)))


# --------------------------------------------------------------------------- from a config
def build_encoder(config: ModelConfig, image_shape: Sequence[int]) -> snt.Module:
    """The encoder `config` describes (architecture, sizes, deterministic) for images of `image_shape`."""
    del image_shape  # encoders take their input shape from the first batch
    common = dict(
        latent_size=config.latent_size,
        activation=config.activation,
        min_scale=config.min_scale,
        deterministic=config.deterministic_encoder,
    )
    if config.architecture == "conv":
        return ConvEncoder(config.conv_channels, config.hidden_sizes, **common)
    return Encoder(config.hidden_sizes, **common)


def build_decoder(config: ModelConfig, image_shape: Sequence[int]) -> snt.Module:
    """The decoder `config` describes: it mirrors the encoder's sizes, with the configured likelihood."""
    common = dict(activation=config.activation, likelihood=config.likelihood, normal_scale=config.normal_scale)
    hidden_sizes = tuple(reversed(config.hidden_sizes))
    if config.architecture == "conv":
        return ConvDecoder(hidden_sizes, image_shape, tuple(reversed(config.conv_channels)), **common)
    return Decoder(hidden_sizes, image_shape, **common)



def network_parts(config: ModelConfig, image_shape: Sequence[int], parts: dict) -> dict:
    """The MLP or convolutional architecture's family builder (`tfvae.families`): its encoder and decoder."""
    return {**parts, "encoder": build_encoder(config, image_shape), "decoder": build_decoder(config, image_shape)}
