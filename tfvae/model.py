"""The VAE: an encoder, a decoder and a prior, injected as parts.

    p(z) = N(0, I),   p(x|z) = decoder(z),   q(z|x) = encoder(x)

(Kingma & Welling, 2014). The model only composes its parts; the loss lives
in `tfvae.objectives`, so a beta-VAE or an IWAE differs by one argument, not
by a subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, families
from tfvae.config import ModelConfig
from tfvae.pixels import as_codes, as_images  # the boundary conversions (re-exported: tfvae.model.as_images)

__all__ = ["VAEOutput", "draw_latents", "is_transformed", "central_code", "standard_normal_prior", "VAE",
    "ConditionalVAE", "Given", "create_variables", "sample_count", "compile_for_one_model", "split_batch", "build"]

tfd = tfp.distributions


class VAEOutput(NamedTuple):
    """One pass through the model for a batch of images."""

    posterior: tfd.Distribution  # q(z|x), batch [b], event [latent]
    z: tf.Tensor  # a draw from the posterior, [b, latent]
    likelihood: tfd.Distribution  # p(x|z), batch [b], event [H, W, C]


def draw_latents(posterior: tfd.Distribution, sample_shape=(), seed: tf.Tensor | None = None) -> tf.Tensor:
    """Reparameterised draws z ~ posterior, [*sample_shape, *batch, *event].

    For a Normal posterior (or an Independent over a Normal, what the
    encoders return) with a stateless `seed` ([2] int), z = loc + scale * eps
    with eps drawn by Philox (`tf.random.stateless_normal(alg="philox")`):
    the same distribution and gradients as `posterior.sample`, whose default
    algorithm choice is an order of magnitude slower inside an XLA-compiled
    step on a CPU (benchmarks/README.md). A flow (a TransformedDistribution)
    draws its base so and pushes the draws through its bijector, which then
    knows their inverse (log q at them needs no inverse pass). Other
    posteriors, and `seed=None`, use `posterior.sample`.
    """
    if is_transformed(posterior) and seed is not None:  # a flow: its base, then forward
        return posterior.bijector.forward(draw_latents(posterior.distribution, sample_shape, seed))
    normal = posterior.distribution if isinstance(posterior, tfd.Independent) else posterior
    if seed is None or type(normal) is not tfd.Normal:
        return posterior.sample(sample_shape, seed=seed)
    loc, scale = tf.convert_to_tensor(normal.loc), tf.convert_to_tensor(normal.scale)
    shape = tf.concat(
        [tf.reshape(tf.cast(sample_shape, tf.int32), [-1]), tf.broadcast_dynamic_shape(tf.shape(loc), tf.shape(scale))],
        axis=0,
    )
    eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype, alg="philox")
    return loc + scale * eps


def is_transformed(distribution: tfd.Distribution) -> bool:
    """True for a distribution pushed through a bijector (TFP builds two classes of them), e.g. a flow."""
    return getattr(distribution, "bijector", None) is not None and hasattr(distribution, "distribution")


def central_code(posterior: tfd.Distribution) -> tf.Tensor:
    """A code that stands for q(z|x) in a figure or a reconstruction: [*batch, latent].

    Its mean where TFP knows it; for two stochastic layers the chained mean
    [E z1, E(z2 | E z1)]; for a flow, the base distribution's mean pushed
    through the flow.
    """
    if hasattr(posterior, "chained_mean"):
        return posterior.chained_mean()
    try:
        return posterior.mean()
    except NotImplementedError:
        if is_transformed(posterior):
            return posterior.bijector.forward(central_code(posterior.distribution))
        raise


def standard_normal_prior(latent_size: int) -> tfd.Distribution:
    """p(z) = N(0, I), event shape [latent_size]."""
    return tfd.Independent(
        tfd.Normal(loc=tf.zeros([latent_size]), scale=tf.ones([latent_size])), reinterpreted_batch_ndims=1
    )


def _pass_through(vae, images, seed: tf.Tensor | None = None) -> VAEOutput:
    """`vae` (anything with encode and decode) on images [b, H, W, C]: q(z|x), one reparameterised z [b, latent]
    per image, and p(x|z)."""
    posterior = vae.encode(images)
    z = draw_latents(posterior, seed=seed)
    return VAEOutput(posterior=posterior, z=z, likelihood=vae.decode(z))


def _reconstruction(vae, images) -> tf.Tensor:
    """Mean of p(x | z = central_code(q(z|x))) for each image: [b, H, W, C]."""
    return vae.decode(central_code(vae.encode(images))).mean()


class VAE(snt.Module):
    """A variational autoencoder made of `encoder`, `decoder` and `prior`.

    `prior` is a `tfd.Distribution` over z (event [latent]), or a module
    whose call with no arguments returns one, so that it can learn (a
    mixture, a VampPrior: `tfvae.priors`); default N(0, I). `vae.prior` is the
    distribution either way.
    """

    side_data: tuple[str, ...] = ()  # what travels with an image that the model needs (`tfvae.protocol`): nothing

    def __init__(
        self,
        encoder: snt.Module,
        decoder: snt.Module,
        prior: tfd.Distribution | snt.Module | None = None,
        name: str = "vae",
    ):
        super().__init__(name=name)
        self.encoder = encoder
        self.decoder = decoder
        if prior is None:
            prior = standard_normal_prior(encoder.latent_size)
        if not isinstance(prior, tfd.Distribution) and not callable(prior):
            raise ValueError(f"prior must be a tfd.Distribution or a module that returns one; got {type(prior).__name__}")
        self.prior_part = prior
        self.latent_size = int(getattr(encoder, "latent_size", None) or self.prior.event_shape[0])

    @property
    def prior(self) -> tfd.Distribution:
        """p(z), event [latent]: the prior part itself, or what it returns when called."""
        return self.prior_part if isinstance(self.prior_part, tfd.Distribution) else self.prior_part()

    def encode(self, images: tf.Tensor) -> tfd.Distribution:
        """images [b, H, W, C] -> q(z|x), batch [b], event [latent].

        `images` may be any array-like; uint8 pixels are scaled by 1/255 (see `tfvae.pixels.as_images`).
        """
        return self.encoder(as_images(images))

    def decode(self, z: tf.Tensor) -> tfd.Distribution:
        """z [..., latent] -> p(x|z), batch [...], event [H, W, C]. `z` may be any array-like.

        Raises:
          ValueError: codes whose last axis is not `latent_size`.
        """
        return self.decoder(self._checked_codes(z))

    def _checked_codes(self, z) -> tf.Tensor:
        z = as_codes(z)
        if z.shape.rank == 0 or (z.shape.rank is not None and z.shape[-1] not in (None, self.latent_size)):
            raise ValueError(f"this model's latent codes have size {self.latent_size}; "
                             f"got codes of shape {tuple(z.shape.as_list())}")
        return z

    def __call__(self, images: tf.Tensor, seed: tf.Tensor | None = None) -> VAEOutput:
        """Encodes, draws one z per image (reparameterised) and decodes it."""
        return _pass_through(self, images, seed)

    def sample(self, n: int, seed: tf.Tensor | None = None, sampler=None) -> tf.Tensor:
        """Mean images of p(x|z) for n draws z ~ p(z), or z ~ `sampler`: [n, H, W, C] in [0, 1].

        `sampler`: what draws the codes instead of the prior, anything with `sample(n, seed=...)` -> [n, latent]:
        a sampler fitted to the training set's codes (`tfvae.samplers`), or a `tfd.Distribution`.

        Raises:
          ValueError: n that is not a positive integer.
        """
        codes = (self.prior if sampler is None else sampler).sample(sample_count(n), seed=seed)
        return self.decode(codes).mean()

    def reconstruct(self, images: tf.Tensor) -> tf.Tensor:
        """Mean of p(x | z = E[q(z|x)]) for each image (array-likes and uint8 as `encode`): [b, H, W, C] in [0, 1]."""
        return _reconstruction(self, images)

    def given(self, side=None) -> VAE:
        """The model given a batch's side data: itself (it needs none; see `tfvae.protocol`)."""
        return self


class ConditionalVAE(VAE):
    """A VAE given the class y of each image (Sohn et al., 2015): q(z|x, y), p(x|z, y) and p(z).

    `encoder(images, labels)` and `decoder(z, labels)` take integer labels
    [b] in [0, num_classes) (`tfvae.conditioning` wraps any encoder and
    decoder so); the prior does not depend on y. Every method takes the labels
    beside the images or codes; `vae.given(labels)` is the model with them
    fixed, which has the unconditional interface (what the objectives, the
    figures and the export call). log p(x|y) is what `tfvae.evaluate` then
    estimates.
    """

    side_data = ("label",)

    def __init__(self, encoder: snt.Module, decoder: snt.Module, num_classes: int,
                 prior: tfd.Distribution | snt.Module | None = None, name: str = "conditional_vae"):
        super().__init__(encoder, decoder, prior, name=name)
        self.num_classes = checks.positive_int(num_classes, "num_classes")

    def check_side_data(self, side: Mapping, where: str) -> None:
        """Raises one ValueError line when `where` has no labels (side["label"], [N]; None: present, unread) or
        labels that are not class indices."""
        if "label" not in side:
            raise ValueError(f"model.conditional=true needs labels, and {where} has none: give images with labels "
                             "(tfvae.data.from_arrays(images, labels, ...), or a dataset of (images, labels))")
        if side["label"] is None:
            return
        labels = np.asarray(side["label"])
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ValueError(f"model.num_classes is {self.num_classes}, but {where} has label {int(bad[0])}: labels "
                             f"must be 0..{self.num_classes - 1} (a dataset without labels marks them -1)")

    def side_data_for_samples(self, n: int) -> dict:
        """The labels of n draws: classes 0, 1, 2, ... in turn, {"label": int64 [n]}."""
        return {"label": tf.range(n, dtype=tf.int64) % self.num_classes}

    def encode(self, images, labels) -> tfd.Distribution:
        """images [b, H, W, C], labels [b] (or one label for all) -> q(z|x, y), batch [b], event [latent]."""
        return self.encoder(as_images(images), labels)  # (the encoder checks the labels: tfvae.conditioning)

    def decode(self, z, labels) -> tfd.Distribution:
        """z [..., b, latent], labels [b] (or one label for all) -> p(x|z, y), batch [..., b], event [H, W, C]."""
        return self.decoder(self._checked_codes(z), labels)

    def given(self, labels) -> Given:
        """This model with its labels fixed: [b] for a batch of b images, or one class for every image; or a
        batch's side data, {"label": [b], ...} (`tfvae.protocol`)."""
        return Given(self, labels["label"] if isinstance(labels, Mapping) else labels)

    def __call__(self, images, labels, seed: tf.Tensor | None = None) -> VAEOutput:
        return self.given(labels)(images, seed)

    def sample(self, n: int, labels, seed: tf.Tensor | None = None) -> tf.Tensor:
        """Mean images of p(x|z, y) for n draws z ~ p(z), y = `labels` (one class, or [n]): [n, H, W, C]."""
        return self.decode(self.prior.sample(sample_count(n), seed=seed), labels).mean()

    def reconstruct(self, images, labels) -> tf.Tensor:
        """Mean of p(x | z = E[q(z|x, y)], y) for each image: [b, H, W, C] in [0, 1]."""
        return self.given(labels).reconstruct(images)


class Given:
    """A `ConditionalVAE` with its labels fixed: encode(images), decode(z), prior, sample(n), reconstruct(images).

    The interface of an unconditional `VAE`, so whatever scores or draws a
    VAE (`tfvae.objectives`, `tfvae.evaluation`, the figures) takes it as is.
    Not a module: its variables are the model's.
    """

    def __init__(self, model: ConditionalVAE, labels):
        self.model, self.labels = model, labels
        self.latent_size = model.latent_size

    @property
    def prior(self) -> tfd.Distribution:
        return self.model.prior

    def encode(self, images) -> tfd.Distribution:
        return self.model.encode(images, self.labels)

    def decode(self, z) -> tfd.Distribution:
        return self.model.decode(z, self.labels)

    def __call__(self, images, seed: tf.Tensor | None = None) -> VAEOutput:
        return _pass_through(self, images, seed)

    def sample(self, n: int, seed: tf.Tensor | None = None) -> tf.Tensor:
        return self.model.sample(n, self.labels, seed)

    def reconstruct(self, images) -> tf.Tensor:
        return _reconstruction(self, images)


def create_variables(model, image_shape: Sequence[int], side: Mapping | None = None) -> None:
    """Creates a model's weights (Sonnet makes them at the first call) from one blank image of `image_shape`.

    A model that needs side data (`tfvae.protocol`) is given `side`'s first row ({name: [b, ...]}, e.g. of the
    first training batch), or else that of one draw (`side_data_for_samples(1)`: class 0).
    """
    if getattr(model, "side_data", ()):
        side = model.side_data_for_samples(1) if side is None else {name: values[:1] for name, values in side.items()}
        model = model.given(side)
    if isinstance(model, VAE):
        model.prior.log_prob(model(tf.zeros([1, *image_shape])).z)  # a learned prior's networks too
    else:  # any model of the protocol (tfvae.protocol), or a conditional model given its labels
        z = model.encode(tf.zeros([1, *image_shape])).sample(seed=tf.constant([0, 0]))
        model.decode(z).log_prob(tf.zeros([1, *image_shape])) + model.prior.log_prob(z)


def sample_count(n) -> int | tf.Tensor:
    """`n` draws, checked: a positive int (a NumPy or eager tensor integer too); a traced tensor passes as is."""
    if tf.is_tensor(n):
        value = tf.get_static_value(n)
        if value is None:
            return n
        n = value.item() if hasattr(value, "item") else value
    return checks.positive_int(n, "n")


def compile_for_one_model(function: Callable, **options) -> Callable:
    """`tf.function(function, **options)` for a closure over one model, made anew for each model.

    TF counts the traces of every function made from one piece of code
    together and warns of "retracing" when most calls trace; a closure
    compiled for each new model (an evaluation, a test pass) traces once per
    model by design, so the warning is turned off for it with the flag TF sets
    on the functions it restores. Compiling per model, not once for all
    models, also lets a model whose variables are not built yet build them on
    its first call.
    """
    compiled = tf.function(function, **options)
    compiled._omit_frequent_tracing_warning = True
    return compiled


def build(config: ModelConfig, image_shape: Sequence[int]) -> VAE:
    """The VAE that `config` describes, for images of `image_shape` (H, W, C): each family it chooses
    (`tfvae.families`: architecture, posterior, prior, class conditioning) adds its parts in the table's order.

    The decoder mirrors the encoder's sizes.
    """
    parts: dict = {}
    for family in families.chosen(config):
        parts = family.build(config, image_shape, parts)
    if "num_classes" in parts:  # encoder and decoder take the class
        return ConditionalVAE(parts["encoder"], parts["decoder"], parts["num_classes"], parts.get("prior"))
    return VAE(parts["encoder"], parts["decoder"], parts.get("prior"))
