"""One training step: the loss a `TrainConfig` asks for, its gradients, the check, the update.

    loss = step.training_loss(experiment.train)            # (model, batch, seed, step) -> Terms
    terms, finite, size = step.train_step(model, optimizer, images, seed, 0, loss, experiment.train)
    # with side data, a batch is (images, {"label": labels}) (tfvae.protocol)

`train_step` is the whole step: the batch-mean terms and gradients under
`tf.GradientTape` (a distributed run passes the all-reduced ones instead:
`tfvae.distribute.replicated_gradients`), the finiteness check, the update.
`checked_step` adds the loop's bookkeeping for `tfvae.runners`. Every choice
a config makes about the objective is made here, once (`training_loss`);
`tfvae.objectives` and `tfvae.disentangling` hold the pure functions it
chooses between.

An objective with a second trained network (FactorVAE's discriminator,
train.factor_weight > 0) has an `Adversary`: the network and its own
optimizer, built by `build_adversary` beside the model's optimizer and
checkpointed with it (`Adversary.checkpointables`). Its loss takes the
network too and returns both losses (`disentangling.FactorVAELosses`);
`train_step(..., adversary=...)` differentiates each for its own network's
weights from one forward pass and applies both updates, or, with
on_nonfinite "skip", neither.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import sonnet as snt
import tensorflow as tf

from tfvae import disentangling, objectives, precision, protocol
from tfvae.config import TrainConfig
from tfvae.optimizers import build_optimizer
from tfvae.objectives import Terms

# What can go non-finite in a step, in the order it is checked.
CHECKED_TERMS = ("loss", "distortion", "rate", "gradient")
# Fu et al. (2019): each cycle ramps the weight up over its first half (R = 0.5), then holds it.
_CYCLE_RAMP_FRACTION = 0.5

# (model, batch, seed [2] int32, global step) -> batch-mean Terms (scalars). A batch is images [b, H, W, C],
# or (images, side data {name: [b, ...]}) for a model that needs it (`tfvae.protocol.scorer`).
TrainingLoss = Callable[[snt.Module, tf.Tensor, tf.Tensor, tf.Tensor], Terms]
# (model, network, batch, seed, step) -> the model's batch-mean Terms and the network's loss: an objective that
# trains a second network (FactorVAE's discriminator).
AdversarialLoss = Callable[[snt.Module, snt.Module, tf.Tensor, tf.Tensor, tf.Tensor], disentangling.FactorVAELosses]
# (model, batch, seed, loss, step, precision) -> (batch-mean terms [3], gradients, images in the batch).
GradientsFn = Callable[..., tuple[tf.Tensor, list[tf.Tensor], tf.Tensor]]


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss term or gradient."""


class StepOutput(NamedTuple):
    """What one step computed."""

    terms: tf.Tensor  # [3]: loss, distortion, rate, batch means in nats per image
    finite: tf.Tensor  # [4] bool, one per CHECKED_TERMS
    size: tf.Tensor  # float32 scalar: images in the (global) batch


# --------------------------------------------------------------------------- schedules
def kl_weight(config: TrainConfig, step) -> tf.Tensor:
    """The KL weight in effect at global step `step` (a float32 scalar), by `config.kl_schedule`.

    "constant": config.beta. "linear": beta * min(1, step / warmup_steps),
    from 0 at step 0 to beta at warmup_steps (Bowman et al., 2016; Sønderby et
    al., 2016). "cyclical": the linear ramp over the first half of every
    cycle of cycle_steps, then beta for the second half (Fu et al., 2019).
    `step` is a Python int or an integer tensor.
    """
    beta = tf.constant(config.beta, tf.float32)
    if config.kl_schedule == "constant":
        return beta
    step = tf.cast(step, tf.int64)
    if config.kl_schedule == "linear":
        progress = tf.cast(step, tf.float32) / float(config.warmup_steps)
    elif config.kl_schedule == "cyclical":
        phase = tf.cast(tf.math.floormod(step, config.cycle_steps), tf.float32) / float(config.cycle_steps)
        progress = phase / _CYCLE_RAMP_FRACTION
    else:
        raise ValueError(f"unknown KL schedule {config.kl_schedule!r}")
    return beta * tf.clip_by_value(progress, 0.0, 1.0)


def learning_rate(config: TrainConfig, step) -> tf.Tensor:
    """The learning rate in effect at global step `step` (a float32 scalar), by `config.lr_schedule`.

    "constant": learning_rate. "exponential": learning_rate * lr_decay_rate **
    (step / lr_decay_steps). `step` is a Python int or an integer tensor.
    """
    rate = tf.constant(config.learning_rate, tf.float32)
    if config.lr_schedule == "constant":
        return rate
    if config.lr_schedule == "exponential":
        progress = tf.cast(step, tf.float32) / float(config.lr_decay_steps)
        return rate * tf.pow(tf.constant(config.lr_decay_rate, tf.float32), progress)
    raise ValueError(f"unknown learning-rate schedule {config.lr_schedule!r}")


# --------------------------------------------------------------------------- the loss
def training_loss(config: TrainConfig) -> TrainingLoss:
    """The loss `config` trains on, as (model, batch, seed, step) -> batch-mean `Terms`.

    "elbo": `objectives.elbo_loss` with the KL weight of the step's schedule,
    config.num_samples, kl_estimator, free_bits and tc_weight. "iwae":
    `objectives.iwae_loss` with k = config.iwae_k, the weight on each log
    ratio and config.gradient (plain or DReG). The networks compute in config.precision (`tfvae.precision`);
    the terms are float32 either way.
    """
    if config.objective not in ("elbo", "iwae"):
        raise ValueError(f"unknown objective {config.objective!r}")
    if config.factor_weight > 0:
        return _factor_vae_loss(config)

    def loss(model, batch, seed: tf.Tensor, step) -> Terms:
        model, images = protocol.scorer(model, batch)
        weight = tf.cast(kl_weight(config, step), tf.float32)
        with precision.compute(config.precision):
            if config.dip != "none":
                return disentangling.dip_vae_loss(
                    model, images, seed, kind=config.dip, lambda_offdiag=config.dip_lambda_offdiag,
                    lambda_diag=disentangling.dip_lambda_diag(config.dip, config.dip_lambda_offdiag,
                                                              config.dip_lambda_diag),
                    beta=weight, num_samples=config.num_samples, kl_estimator=config.kl_estimator,
                )
            if config.capacity_max:
                return disentangling.capacity_loss(
                    model, images, seed, target=disentangling.capacity(step, config.capacity_max, config.capacity_steps),
                    gamma=config.capacity_gamma, num_samples=config.num_samples, kl_estimator=config.kl_estimator,
                )
            if config.objective == "iwae":
                return objectives.iwae_loss(
                    model, images, seed, k=config.iwae_k, num_samples=config.num_samples,
                    kl_weight=weight, kl_estimator=config.kl_estimator, gradient=config.gradient,
                )
            return objectives.elbo_loss(
                model, images, seed, beta=weight, num_samples=config.num_samples,
                kl_estimator=config.kl_estimator, free_bits=config.free_bits, tc_weight=config.tc_weight,
            )

    return loss


def _factor_vae_loss(config: TrainConfig) -> AdversarialLoss:
    """FactorVAE's (model, discriminator, batch, seed, step) -> `FactorVAELosses`, the KL weight by the schedule."""

    def loss(model, discriminator, batch, seed: tf.Tensor, step) -> disentangling.FactorVAELosses:
        model, images = protocol.scorer(model, batch)
        weight = tf.cast(kl_weight(config, step), tf.float32)
        with precision.compute(config.precision):
            return disentangling.factor_vae_losses(
                model, discriminator, images, seed, gamma=config.factor_weight, beta=weight,
                num_samples=config.num_samples, kl_estimator=config.kl_estimator,
            )

    return loss


# --------------------------------------------------------------------------- a second trained network
class Adversary(NamedTuple):
    """A network trained in the same step as the model, on its own loss, by its own optimizer."""

    network: snt.Module  # FactorVAE's `disentangling.Discriminator`
    optimizer: snt.Optimizer

    def checkpointables(self) -> dict:
        """What a checkpoint holds of it: the network's weights and the optimizer's slots and step."""
        return {"adversary": self.network, "adversary_optimizer": self.optimizer}


def build_adversary(config: TrainConfig, latent_size: int) -> Adversary | None:
    """The adversary `config` trains (FactorVAE's discriminator when train.factor_weight > 0), or None.

    Its weights are made now, from codes of `latent_size`, after the model's (so TensorFlow's global seed
    gives both the same initial values in every run), and its Adam's slots too (`build_optimizer`).
    """
    if config.factor_weight == 0:
        return None
    network = disentangling.Discriminator(config.discriminator_hidden_sizes)
    network(tf.zeros([2, latent_size]))
    optimizer = build_optimizer(network, config.discriminator_learning_rate, "adam",
                                adam_betas=disentangling.DISCRIMINATOR_ADAM_BETAS)
    return Adversary(network, optimizer)


def adversarial_gradients(
    model, network: snt.Module, batch, seed: tf.Tensor, loss: AdversarialLoss, step, precision_name: str = "float32"
) -> tuple[tf.Tensor, list[tf.Tensor], list[tf.Tensor], tf.Tensor]:
    """From one forward pass: the model's batch-mean terms [3], the gradients of its loss for the model's
    weights and of the network's loss for the network's weights, and the batch size."""
    with tf.GradientTape(persistent=True) as tape:
        losses = loss(model, network, batch, seed, step)
    gradients = precision.gradients(tape, losses.terms.loss, model.trainable_variables, precision_name)
    network_gradients = precision.gradients(tape, losses.discriminator, network.trainable_variables, precision_name)
    del tape
    return tf.stack(losses.terms), gradients, network_gradients, batch_size(batch)


def loss_and_gradients(
    model, batch, seed: tf.Tensor, loss: TrainingLoss, step, precision_name: str = "float32"
) -> tuple[tf.Tensor, list[tf.Tensor], tf.Tensor]:
    """The batch-mean terms [3], the gradients of the loss for `model.trainable_variables`, the batch size."""
    with tf.GradientTape() as tape:
        terms = loss(model, batch, seed, step)
    gradients = precision.gradients(tape, terms.loss, model.trainable_variables, precision_name)
    return tf.stack(terms), gradients, batch_size(batch)


def batch_size(batch) -> tf.Tensor:
    """The number of images in a batch (images, or a tuple that starts with them), float32."""
    return tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)


def finite_flags(terms: tf.Tensor, gradients) -> tf.Tensor:
    """[len(terms) + 1] bool: each term finite, then all `gradients` finite (`CHECKED_TERMS`).

    The gradients are checked through the sum of all their entries, one
    read-only pass each (an element-wise `is_finite` writes a mask and
    reduces it, ~3x the time in an XLA-compiled step): a NaN or an infinity
    anywhere makes the sum NaN or infinite, and a sum of finite entries
    overflows only when the gradients are already ~1e32 or more.
    """
    gradient_sum = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients])
    return tf.concat([tf.math.is_finite(terms), tf.math.is_finite(gradient_sum)[None]], axis=0)


# --------------------------------------------------------------------------- the step
def train_step(
    model: snt.Module,
    optimizer: snt.Optimizer,
    images,
    seed: tf.Tensor,
    step,
    loss: TrainingLoss,
    config: TrainConfig,
    *,
    gradients_fn: GradientsFn = loss_and_gradients,
    check_finite: bool = True,
    adversary: Adversary | None = None,
) -> StepOutput:
    """One optimisation step on a batch at global step `step`, at `learning_rate(config, step)`.

    With config.on_nonfinite "stop" the update is applied whatever the check
    says (the caller then stops and keeps none of it: `checked_step`); with
    "skip" a non-finite step leaves weights and optimizer untouched (XLA
    copies every weight around that conditional, ~20% a step).
    `check_finite=False` only measures what the check costs.

    With an `adversary`, `loss` is an `AdversarialLoss`: the adversary's
    network is trained in the same step (`adversarial_gradients`), by its own
    optimizer at its own constant learning rate; its gradients count in the
    check's "gradient" (one device only: `gradients_fn` is not used).
    """
    if adversary is None:
        terms, gradients, size = gradients_fn(model, images, seed, loss, step, config.precision)
        checked_gradients, network_gradients = gradients, []
    else:
        terms, gradients, network_gradients, size = adversarial_gradients(
            model, adversary.network, images, seed, loss, step, config.precision
        )
        checked_gradients = gradients + network_gradients
    finite = finite_flags(terms, checked_gradients) if check_finite else tf.ones([len(CHECKED_TERMS)], tf.bool)
    if config.on_nonfinite == "skip":
        if tf.reduce_all(finite):
            _apply(optimizer, model, config, step, gradients)
            if adversary is not None:
                adversary.optimizer.apply(network_gradients, adversary.network.trainable_variables)
    else:
        _apply(optimizer, model, config, step, gradients)
        if adversary is not None:
            adversary.optimizer.apply(network_gradients, adversary.network.trainable_variables)
    return StepOutput(terms, finite, size)


def _apply(optimizer: snt.Optimizer, model: snt.Module, config: TrainConfig, step, gradients) -> None:
    optimizer.learning_rate.assign(learning_rate(config, step))
    optimizer.apply(gradients, model.trainable_variables)


class LoopState(snt.Module):
    """The training loop's own variables, checkpointed with the model.

    step: steps taken. sums / count: example-weighted sums of the terms
    (loss, distortion, rate) and the number of examples since the last
    history row. skipped: batches skipped as non-finite. bad_step / bad_term:
    the step and the index in CHECKED_TERMS of a non-finite step (-1: none).
    """

    def __init__(self):
        super().__init__(name="loop_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.sums = tf.Variable(tf.zeros([3]), trainable=False, name="sums")
        self.count = tf.Variable(0.0, trainable=False, name="count")
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
        self.bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_step")
        self.bad_term = tf.Variable(-1, dtype=tf.int32, trainable=False, name="bad_term")

    def take_interval_means(self) -> Terms:
        """The interval's mean terms (NaN if every batch was skipped); resets the sums."""
        count = float(self.count.numpy())
        means = self.sums.numpy() / count if count else np.full(3, np.nan)
        self.sums.assign(tf.zeros([3]))
        self.count.assign(0.0)
        return Terms(*means.tolist())


def checked_step(
    model: snt.Module,
    optimizer: snt.Optimizer,
    state: LoopState,
    images,
    seed: tf.Tensor,
    loss: TrainingLoss,
    config: TrainConfig,
    **step_options,
) -> tf.Tensor:
    """`train_step` at `state.step` with the loop's bookkeeping; True when the loop must stop.

    A finite step adds its terms, weighted by the batch size, to `state.sums`.
    A non-finite one is counted in `state.skipped` (on_nonfinite "skip"), or
    recorded in `state.bad_step` / `bad_term` and stops the loop ("stop";
    `fit` then raises without a checkpoint, so its update is never kept).
    """
    output = train_step(model, optimizer, images, seed, state.step, loss, config, **step_options)
    good = tf.reduce_all(output.finite)
    skip = config.on_nonfinite == "skip"
    if skip:
        state.skipped.assign_add(1 - tf.cast(good, tf.int64))
    else:
        first_bad = tf.cast(tf.argmin(tf.cast(output.finite, tf.int32)), tf.int32)
        state.bad_step.assign(tf.where(good, state.bad_step, state.step + 1))
        state.bad_term.assign(tf.where(good, state.bad_term, first_bad))
    # Selects, not a conditional: a non-finite step adds nothing (and no NaN) to the sums.
    state.sums.assign_add(tf.where(good, output.size * output.terms, tf.zeros([3])))
    state.count.assign_add(tf.where(good, output.size, 0.0))
    stop = tf.logical_and(tf.logical_not(good), not skip)
    state.step.assign_add(1 - tf.cast(stop, tf.int64))
    return stop


def nonfinite_error(state: LoopState, last_checkpoint: str | None) -> NonFiniteError:
    """The error `fit` raises for the non-finite step recorded in `state`."""
    term = CHECKED_TERMS[int(state.bad_term.numpy())]
    kept = (
        f"the last good checkpoint, {Path(last_checkpoint).name}, is kept"
        if last_checkpoint
        else "no checkpoint had been written yet"
    )
    return NonFiniteError(
        f"training stopped: the {term} was not finite at step {int(state.bad_step.numpy())}; {kept}. "
        "Check the data for NaN/Inf pixels, lower train.learning_rate, or set train.on_nonfinite=skip."
    )


__all__ = [
    "CHECKED_TERMS",
    "Adversary",
    "AdversarialLoss",
    "adversarial_gradients",
    "build_adversary",
    "LoopState",
    "NonFiniteError",
    "StepOutput",
    "batch_size",
    "checked_step",
    "finite_flags",
    "kl_weight",
    "learning_rate",
    "loss_and_gradients",
    "nonfinite_error",
    "train_step",
    "training_loss",
]
