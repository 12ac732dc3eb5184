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
define them; a model that does (a `tfvae.VAE`) is used through the same functions.

Side data: what travels with an image besides its pixels (its class label today, ground-truth factors, ...).
A batch is images [b, H, W, C], or (images, side) with `side` a dict of named arrays [b, ...] ({"label": [b]});
a plain (images, labels) pair is read as {"label": labels}. A model that needs some names it in `side_data`
(a tuple, e.g. ("label",)) and has `given(side)`, which returns the model with that batch's side data fixed: an
object with the four parts above, which is what the objectives, the figures and the export see. A model that
needs none (`side_data` absent or empty) is used as it is. Optionally `check_side_data(side, where)` checks the
values once at the door and `side_data_for_samples(n)` gives the side data of n draws (a class per sample).
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


def split_batch_side(batch) -> tuple[tf.Tensor, dict]:
    """(images [b, H, W, C], side data {name: [b, ...]}) of a batch: images alone, (images, side dict),
    or (images, labels) (read as {"label": labels})."""
    if not isinstance(batch, (tuple, list)):
        return batch, {}
    images, *rest = batch
    if not rest:
        return images, {}
    return images, dict(rest[0]) if isinstance(rest[0], dict) else {"label": rest[0]}


def side_data_needed(model) -> tuple[str, ...]:
    """The names of the side data `model` scores images with (empty for most models)."""
    return tuple(getattr(model, "side_data", ()) or ())


def with_side_data(model, side: dict):
    """The model that scores images with side data `side` ({name: [b, ...]}): `model.given(side)` for a model
    that needs side data, else `model` itself.

    Raises:
      ValueError: `side` lacks a name the model needs.
    """
    needed = side_data_needed(model)
    if not needed:
        return model
    missing = [name for name in needed if name not in side]
    if missing:
        raise ValueError(f"this model scores images with their {', '.join(_plural(name) for name in missing)}: "
                         "give batches (images, "
                         f"{{{', '.join(repr(name) + ': ...' for name in missing)}}}), e.g. "
                         "tfvae.data.from_arrays(images, labels, batch_size=...)")
    return model.given(side)


def _plural(name: str) -> str:
    return name if name.endswith("s") else f"{name}s"


def scorer(model, batch) -> tuple:
    """(what scores `batch`, its images [b, H, W, C]): the model with the batch's side data fixed."""
    images, side = split_batch_side(batch)
    return with_side_data(model, side), images


def check_side_data(model, side: dict, where: str) -> None:
    """Raises one ValueError line when `side` ({name: array [N, ...]}, all of `where`'s side data) lacks what
    `model` needs or holds values it cannot take (`model.check_side_data`, which sees `side` too). A value
    None: present, not read (a `tf.data` pipeline's)."""
    if not side_data_needed(model):
        return
    if hasattr(model, "check_side_data"):  # its own words first (a tfvae model names its config field)
        model.check_side_data(side, where)
    missing = [name for name in side_data_needed(model) if name not in side]
    if missing:
        raise ValueError(f"this model needs the {', '.join(missing)} of each image, and {where} has none: give "
                         "images with them (tfvae.data.from_arrays(images, labels, ...), or a dataset of "
                         "(images, labels))")


def side_data_for_samples(model, n: int) -> dict:
    """The side data of n draws from the model (a class per sample for a class-conditional one; else {})."""
    return model.side_data_for_samples(n) if side_data_needed(model) else {}


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


__all__ = ["GenerativeModel", "check_model", "check_side_data", "image_shape", "is_model", "problems", "reconstruct",
           "sample", "scorer", "side_data_for_samples", "side_data_needed", "split_batch_side", "with_side_data"]
