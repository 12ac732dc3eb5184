"""Export a trained VAE as a TensorFlow SavedModel that needs neither tfvae nor Sonnet to run.

    tfvae.export("runs/mnist-bernoulli-20d", "exported/vae")   # or a VAE instead of a run dir

    vae = tf.saved_model.load("exported/vae")                          # plain TensorFlow, anywhere
    vae.encode(images)             # {"mean", "scale"}: q(z|x), each [b, latent]
    vae.decode(z)                  # {"mean"}: E[p(x|z)], [b, H, W, C] (pixel probabilities for Bernoulli,
                                   #  with their "logits" too)
    vae.sample(n, seed)            # {"images"}: E[p(x|z)] at n draws z ~ p(z), [n, H, W, C]
    vae.elbo(images, seed)         # {"negative_elbo", "distortion", "rate"}: per image, [b], nats
    vae.posterior_sample(images, n, seed)  # {"z" [n, b, latent], "log_q" [n, b]}: draws of q(z|x), log q at them
    vae.prior_log_prob(z)          # {"log_p"}: log p(z), [b]
    vae.sample_fitted(n, seed, temperature)   # {"images", "z"}: n draws z of the run's fitted sampler, decoded

`sample_fitted` is there when the export carries a sampler fitted after training (`tfvae.samplers`): by
default the first of gmm, flow, two-stage that RUN_DIR/samplers holds (`export(..., sampler=KIND)` picks one,
`sampler=None` none); `vae.sampler_kind` names it. Its images are the means of p(x|z) at z [n, latent] drawn
from the sampler with its standard deviation scaled by `temperature` (a float32 scalar, 1 for the fitted
density).

A model that needs side data (`tfvae.protocol`), such as the conditional VAE
(`tfvae.model.ConditionalVAE`), takes int64 labels beside each input:
encode(images, labels), decode(z, labels), sample(n, seed, labels) with
labels [n], elbo(images, seed, labels) and posterior_sample(images, n, seed,
labels).

The same functions are the SavedModel's serving signatures
(`vae.signatures["encode"](images=...)`, keyword arguments, dict outputs), so
TF Serving and `saved_model_cli` see them too. `seed` is a stateless seed, two
int32 numbers: the same seed gives the same draws, here and in the in-memory
model (`vae.sample(n, seed)`, `objectives.negative_elbo(vae, images, 1.0,
seed)`). `image_shape` and `latent_size` are saved as variables.

The export is written to a temporary folder beside OUT_DIR and renamed into
place, so OUT_DIR is either absent or a whole SavedModel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import objectives, protocol, rundir, samplers
from tfvae.model import VAE, central_code, draw_latents

tfd = tfp.distributions
SIGNATURES = ("encode", "decode", "sample", "elbo", "posterior_sample", "prior_log_prob")
SAMPLER_PREFERENCE = ("gmm", "flow", "two-stage")  # which fitted sampler of a run an export carries by default


class ExportError(ValueError):
    """The export cannot be written (an existing non-empty OUT_DIR, an unusable model)."""


class ExportModule(tf.Module):
    """The traced functions over a model (`SIGNATURES`), with fixed input signatures for `tf.saved_model.save`."""

    def __init__(self, model: VAE, image_shape: Sequence[int], sampler=None):
        super().__init__(name="tfvae_export")
        self.model = model
        self.image_shape = tf.Variable(list(image_shape), trainable=False, dtype=tf.int32, name="image_shape")
        self.latent_size = tf.Variable(model.latent_size, trainable=False, dtype=tf.int32, name="latent_size")
        images = tf.TensorSpec([None, *image_shape], tf.float32, name="images")
        latents = tf.TensorSpec([None, model.latent_size], tf.float32, name="z")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="n")
        # A model that needs side data (`tfvae.protocol`) takes it beside each input: labels [b] for the class.
        self.side_names = protocol.side_data_needed(model)
        side = [_side_spec(name) for name in self.side_names]
        self.encode = tf.function(self._encode, input_signature=[images, *side])
        self.decode = tf.function(self._decode, input_signature=[latents, *side])
        self.sample = tf.function(self._sample, input_signature=[count, seed, *side])
        self.elbo = tf.function(self._elbo, input_signature=[images, seed, *side])
        self.posterior_sample = tf.function(self._posterior_sample, input_signature=[images, count, seed, *side])
        self.prior_log_prob = tf.function(self._prior_log_prob, input_signature=[latents])
        if sampler is not None:  # the SavedModel saves the sampler's variables with it
            self.sampler = sampler
            self.sampler_kind = tf.Variable(sampler.kind, trainable=False, name="sampler_kind")
            temperature = tf.TensorSpec([], tf.float32, name="temperature")
            self.sample_fitted = tf.function(self._sample_fitted, input_signature=[count, seed, temperature])

    def _scorer(self, side: tuple):
        """The model given the side data inputs, in the order of `side_names`."""
        return protocol.with_side_data(self.model, dict(zip(self.side_names, side)))

    def _encode(self, images: tf.Tensor, *side: tf.Tensor) -> dict[str, tf.Tensor]:
        """images [b, H, W, C] in [0, 1] -> mean and standard deviation of q(z|x), each [b, latent].

        For a posterior without a closed-form mean (two layers, a flow) the
        mean is `model.central_code`, and the scale the standard deviation of
        256 draws (a fixed seed).
        """
        posterior = self._scorer(side).encode(images)
        return {"mean": central_code(posterior), "scale": _scale(posterior)}

    def _decode(self, z: tf.Tensor, *side: tf.Tensor) -> dict[str, tf.Tensor]:
        """z [b, latent] -> the mean of p(x|z), [b, H, W, C]; for Bernoulli pixels also their "logits" [b, H, W,
        C] (the probabilities of confident pixels round to 0 or 1 in float32; log p(x|z) from the logits does
        not)."""
        likelihood = self._scorer(side).decode(z)
        outputs = {"mean": likelihood.mean()}
        logits = _bernoulli_logits(likelihood)
        if logits is not None:
            outputs["logits"] = logits
        return outputs

    def _posterior_sample(self, images: tf.Tensor, n: tf.Tensor, seed: tf.Tensor, *side) -> dict[str, tf.Tensor]:
        """images [b, H, W, C], n, a stateless seed [2] -> n draws z ~ q(z|x) per image, "z" [n, b, latent], and
        their "log_q" = log q(z|x), [n, b], nats: with `prior_log_prob` and `decode`, an importance-sampled
        log p(x) needs nothing else."""
        posterior = self._scorer(side).encode(images)
        z = draw_latents(posterior, [n], seed=seed)
        return {"z": z, "log_q": posterior.log_prob(z)}

    def _prior_log_prob(self, z: tf.Tensor) -> dict[str, tf.Tensor]:
        """z [b, latent] -> "log_p" = log p(z), [b], nats."""
        return {"log_p": self.model.prior.log_prob(z)}

    def _sample(self, n: tf.Tensor, seed: tf.Tensor, *side: tf.Tensor) -> dict[str, tf.Tensor]:
        """n, a stateless seed [2] -> mean images of p(x|z) at n draws z ~ p(z), [n, H, W, C]."""
        return {"images": protocol.sample(self._scorer(side), n, seed=seed)}

    def _elbo(self, images: tf.Tensor, seed: tf.Tensor, *side: tf.Tensor) -> dict[str, tf.Tensor]:
        """images [b, H, W, C], a stateless seed [2] -> one-sample negative ELBO terms per image, [b], nats."""
        terms = objectives.negative_elbo(self._scorer(side), images, 1.0, seed=seed)
        return {"negative_elbo": terms.loss, "distortion": terms.distortion, "rate": terms.rate}

    def _sample_fitted(self, n: tf.Tensor, seed: tf.Tensor, temperature: tf.Tensor) -> dict[str, tf.Tensor]:
        """n, a stateless seed [2], a temperature -> z [n, latent] from the sampler and their mean images."""
        z = self.sampler.sample(n, seed=seed, temperature=temperature)
        return {"images": self.model.decode(z).mean(), "z": z}

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        names = SIGNATURES + (("sample_fitted",) if hasattr(self, "sample_fitted") else ())
        return {name: getattr(self, name).get_concrete_function() for name in names}


def _side_spec(name: str) -> tf.TensorSpec:
    """The signature input of one kind of side data: "label" -> int64 `labels` [b]."""
    if name == "label":
        return tf.TensorSpec([None], tf.int64, name="labels")
    raise ExportError(f"the export does not know how to take side data {name!r} (it takes labels)")


def _bernoulli_logits(likelihood) -> tf.Tensor | None:
    """The logits of a Bernoulli likelihood (reinterpreted, reshaped: any wrapping), in the shape of its mean
    [b, H, W, C]; None for another likelihood."""
    inner = likelihood
    while not isinstance(inner, tfd.Bernoulli) and hasattr(inner, "distribution"):
        inner = inner.distribution
    if not isinstance(inner, tfd.Bernoulli) or inner.logits is None:
        return None
    return tf.reshape(tf.convert_to_tensor(inner.logits), tf.shape(likelihood.mean()))


def _scale(posterior) -> tf.Tensor:
    try:
        return posterior.stddev()
    except NotImplementedError:
        return tf.math.reduce_std(posterior.sample(256, seed=tf.constant([0, 0])), axis=0)


def export(
    source: str | os.PathLike | VAE,
    out_dir: str | os.PathLike,
    *,
    image_shape: Sequence[int] | None = None,
    sampler="auto",
) -> Path:
    """Writes `source` as a SavedModel with the signatures encode, decode, sample and elbo (and sample_fitted).

    Args:
      source: a run directory (its latest readable checkpoint is exported) or a built `VAE`.
      out_dir: where the SavedModel goes; must not exist or be empty.
      image_shape: (H, W, C); by default the decoder's output shape.
      sampler: what `sample_fitted` draws from: "auto" (a run directory's first fitted sampler of
        `SAMPLER_PREFERENCE`, if any), a kind the run has fitted ("gmm", ...), a fitted sampler object, or None.

    Returns:
      `out_dir` as a Path.

    Raises:
      RunDirError: `source` is not a run directory, or has no readable checkpoint.
      ExportError: `out_dir` exists and is not an empty directory.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    model = source if protocol.is_model(source) else rundir.restore_model(source, image_shape)
    if isinstance(sampler, str) or sampler is None:
        kind = None if protocol.is_model(source) else sampler_kind(source, sampler)
        sampler = None if kind is None else samplers.load(samplers.run_path(source, kind))
    if sampler is not None and protocol.side_data_needed(model):
        raise ExportError("a fitted sampler draws codes for a model that needs no side data; export this one (it "
                          f"needs its {', '.join(protocol.side_data_needed(model))}) with sampler=None")
    if image_shape is None:
        image_shape = protocol.image_shape(model)
        if image_shape is None:
            raise ExportError("give image_shape: the decoder has no output_shape to take it from")
    module = ExportModule(model, tuple(int(size) for size in image_shape), sampler)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def sampler_kind(run_dir: str | os.PathLike, choice: str | None = "auto") -> str | None:
    """Which fitted sampler of a run an export carries: `choice` itself if the run has it, for "auto" the first
    of `SAMPLER_PREFERENCE` it has (None if none), None for None or "none".

    Raises:
      ExportError: a kind the run has not fitted (one line: how to fit it).
    """
    if choice is None or choice == "none":
        return None
    if choice == "auto":
        return next((kind for kind in SAMPLER_PREFERENCE if samplers.run_path(run_dir, kind).is_dir()), None)
    if choice not in samplers.FITTED:
        raise ExportError(f"unknown sampler {choice!r}: export carries one of {', '.join(samplers.FITTED)}, "
                          "'auto' or 'none'")
    if not samplers.run_path(run_dir, choice).is_dir():
        raise ExportError(f"{run_dir} has no fitted {choice} sampler: fit it first (`tfvae sample {run_dir} "
                          f"--sampler {choice}`)")
    return choice


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        kind = "a directory that is not empty" if out_dir.is_dir() else "a file"
        raise ExportError(f"export directory {out_dir} already exists and is {kind}; choose a new one or remove it")


__all__ = ["SAMPLER_PREFERENCE", "SIGNATURES", "ExportError", "ExportModule", "export", "sampler_kind"]
