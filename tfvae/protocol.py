"""What a model must be for tfvae to train, evaluate, draw and export it, checked once at the door.

A model is anything with these four (a `tfvae.VAE` is one; so is a plain `snt.Module` of your own):

    encode(images)  images [b, H, W, C] float32 in [0, 1]  -> q(z|x): tfd.Distribution, batch [b], event [latent]
    decode(z)       codes [..., latent], any leading axes  -> p(x|z): tfd.Distribution, batch [...], event [H, W, C]
    prior           a property (read, not called)         -> p(z):   tfd.Distribution, event [latent]
    latent_size     an int, the size of z

Optionally, `image_shape` (H, W, C): what `open_run` and `export` build the model for when the run's data is not
at hand (a `tfvae.VAE` takes it from its decoder's `output_shape`).

To be trained it must also be a `snt.Module` (its variables are what the optimizer and the checkpoint see).
Drawing and reconstructing are derived from the four (`sample`, `reconstruct` below), so a model need not
define them; a model that does (a `tfvae.VAE`) is used through the same functions. A conditional model
(`tfvae.ConditionalVAE`) has the four with labels beside the images, plus `given(labels)`, which returns the
model with its labels fixed: that is what the objectives, the figures and the export see.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

PARTS = ("encode", "decode", "prior", "latent_size")


@runtime_checkable
class GenerativeModel(Protocol):
    """encode, decode, prior (a property) and latent_size: see this module's docstring for the shapes."""

    latent_size: int

    @property
    def prior(self) -> tfd.Distribution: ...

    def encode(self, images: tf.Tensor) -> tfd.Distribution: ...

    def decode(self, z: tf.Tensor) -> tfd.Distribution: ...


def problems(model) -> list[str]:
    """What keeps `model` from being a model (empty: nothing), without calling any of it."""
    missing = [part for part in PARTS if not hasattr(model, part)]
    found = []
    if missing:
        found.append(f"it has no {', '.join(missing)}")
    for part in ("encode", "decode"):
        if part not in missing and not callable(getattr(model, part)):
            found.append(f"{part} is not a method")
    if "prior" not in missing and inspect.isfunction(inspect.getattr_static(type(model), "prior", None)):
        found.append("prior is a method: make it a property (@property) that returns the tfd.Distribution")
    return found


def is_model(model) -> bool:
    """True when `model` has the four parts (a list or a dict of models is not a model)."""
    return not problems(model)


def check_model(model, where: str, trainable: bool = False) -> None:
    """Raises one ValueError line naming what `model` lacks, for the function `where` ("fit(model=...)").

    `trainable`: it must also be a `snt.Module`, whose variables fit trains and checkpoints.
    """
    import sonnet as snt  # (only here: this module is read by what never trains)

    found = problems(model)
    if trainable and not isinstance(model, snt.Module):
        found.insert(0, "it is not a snt.Module")
    if found:
        raise ValueError(f"{where} needs a model with encode, decode, prior (a property) and latent_size"
                         f"{' that is a snt.Module' if trainable else ''}; {type(model).__name__}: {'; '.join(found)}"
                         " (see tfvae.protocol)")


def image_shape(model) -> tuple[int, ...] | None:
    """The (H, W, C) a model says it makes: its optional `image_shape`, or its decoder's `output_shape`, or None
    (then the caller takes it from the data: `open_run` from the run's test images, `export` from its argument)."""
    shape = getattr(model, "image_shape", None) or getattr(getattr(model, "decoder", None), "output_shape", None)
    return tuple(int(size) for size in shape) if shape is not None else None


def sample(model, n, seed: tf.Tensor | None = None, sampler=None) -> tf.Tensor:
    """Mean images of p(x|z) for n draws z ~ p(z), [n, H, W, C]: the model's own `sample` when it has one.

    `sampler`: draws z instead of the prior (anything with `sample(n, seed=...)` -> [n, latent]: a fitted sampler
    of `tfvae.samplers`); its codes go through `decode`, so any model of the protocol takes one.
    """
    if sampler is not None:
        return model.decode(sampler.sample(n, seed=seed)).mean()
    if hasattr(model, "sample"):
        return model.sample(n, seed=seed)
    return model.decode(model.prior.sample(n, seed=seed)).mean()


def reconstruct(model, images) -> tf.Tensor:
    """Mean of p(x | z = a central code of q(z|x)) for each image, [b, H, W, C]: the model's own when it has one."""
    if hasattr(model, "reconstruct"):
        return model.reconstruct(images)
    from tfvae.model import central_code

    return model.decode(central_code(model.encode(images))).mean()


__all__ = ["GenerativeModel", "check_model", "image_shape", "is_model", "problems", "reconstruct", "sample"]
