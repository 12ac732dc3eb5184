"""Runners: how `fit` runs many steps (each `tfvae.step.checked_step`) in one compiled call.

A runner has `run(num_steps)`, which advances `LoopState.step` by up to
num_steps (fewer when a non-finite step stops it), and `checkpointables`:
what a checkpoint must hold beside the model, optimizer and loop state to
resume it exactly. `make_runner` picks one:

- `ArrayRunner`: an `ArraySource` (every named dataset). No `tf.data` in the
  loop: one XLA-compiled call per logging interval, each batch gathered on
  the device, the pass order and the draws of z stateless in the step counter.
- `IteratorRunner`: any `tf.data.Dataset`, through a checkpointed iterator.
- `DistributedRunner`: either, under a `tf.distribute` strategy.

A run with an adversary (FactorVAE's discriminator, `tfvae.step.Adversary`)
hands it to the one-device runners, whose every step trains it too.
"""

from __future__ import annotations

from typing import Protocol

import sonnet as snt
import tensorflow as tf

from tfvae import distribute
from tfvae.config import TrainConfig
from tfvae.data import ArraySource
from tfvae.step import Adversary, LoopState, checked_step, training_loss


class Runner(Protocol):
    """What `fit` needs of a runner."""

    checkpointables: dict

    def run(self, num_steps: int) -> None:
        """Advances the loop state by up to `num_steps` steps."""


def pass_seed(seed: int, epoch) -> tf.Tensor:
    """The seed of pass `epoch` over in-memory training data (an int64 scalar), stateless in (seed, epoch)."""
    pair = tf.cast(tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)]), tf.int32)
    return tf.random.stateless_uniform([], pair, minval=None, maxval=None, dtype=tf.int64)


def step_seed(config: TrainConfig, step: tf.Tensor) -> tf.Tensor:
    """The stateless seed of the draws of z at global step `step`: (train.seed, step) as int32 [2]."""
    return tf.cast(tf.stack([tf.constant(config.seed, tf.int64), step]), tf.int32)


class IteratorRunner:
    """Steps over any `tf.data` pipeline: one compiled call (no XLA: it holds an iterator) per interval.

    Each step draws its stateless seed from a `tf.random.Generator`; the
    generator and the iterator are checkpointed.
    """

    def __init__(self, model, optimizer, config: TrainConfig, state: LoopState, dataset: tf.data.Dataset,
                 check_finite: bool = True, adversary: Adversary | None = None):
        rng = tf.random.Generator.from_seed(config.seed)
        iterator = iter(dataset.repeat().prefetch(2))
        loss = training_loss(config)
        self.checkpointables = {"rng": rng, "iterator": iterator}

        @tf.function
        def run_steps(num_steps: tf.Tensor) -> None:
            for _ in tf.range(num_steps):
                seed = rng.uniform_full_int([2], tf.int32)
                if checked_step(model, optimizer, state, next(iterator), seed, loss, config, check_finite=check_finite,
                                adversary=adversary):
                    break

        self._run_steps = run_steps

    def run(self, num_steps: int) -> None:
        self._run_steps(tf.constant(num_steps, tf.int64))


class ArrayRunner:
    """Steps over in-memory images with no `tf.data` in the loop, XLA-compiled with train.jit_compile.

    Pass e visits the images in the order `source.indices(pass_seed(source.seed,
    e), ...)`, computed once per pass; batch k of it is preprocessed
    (binarized) as `source.batch` does with that pass seed (the same
    distribution; under XLA not the same draws, since XLA's stateless random
    numbers come from another algorithm than TensorFlow's kernels), and the
    draws of z at step s use the seed `step_seed(config, s)`; so how steps
    are split into calls does not change the result, but a call must not
    cross a pass boundary. A source with side data gives batches (images,
    {name: [b, ...]}) (`fit` keeps only what the model needs). XLA compiles
    the full batches' loop once; a smaller last batch runs as a TensorFlow
    graph (~2 s of compilation saved).
    """

    def __init__(self, model, optimizer, config: TrainConfig, state: LoopState, source: ArraySource,
                 check_finite: bool = True, adversary: Adversary | None = None):
        self.checkpointables = {}
        self._state, self._source = state, source
        self._cached_order = (None, None, None)  # (epoch, order, seed) of the pass in progress
        batch_size, examples = source.batch_size, source.num_examples
        self._full_batches, self._steps_per_pass = examples // batch_size, source.num_batches
        full_batches, steps_per_pass = self._full_batches, self._steps_per_pass
        loss = training_loss(config)

        def step_on(index: tf.Tensor, seed: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
            images = source.preprocess(tf.gather(source.pixels, index), seed, k)
            batch = source.element(images, index)
            z_seed = step_seed(config, state.step)
            return checked_step(model, optimizer, state, batch, z_seed, loss, config, check_finite=check_finite,
                                adversary=adversary)

        # XLA compiles a function anew for every value of an input it must know
        # at compile time, such as the begin of a `tf.slice` or the bounds of a
        # `tf.range`. So the batch's indices are gathered from [batches,
        # batch_size], and the loop runs while `state.step < stop_at`, a
        # variable: one compilation in all.
        self._stop_at = tf.Variable(0, dtype=tf.int64, trainable=False, name="stop_at")

        @tf.function(jit_compile=config.jit_compile)
        def run_full(order: tf.Tensor, seed: tf.Tensor) -> None:
            batches = tf.reshape(order[: full_batches * batch_size], [full_batches, batch_size])
            while state.step < self._stop_at:
                k = state.step % steps_per_pass
                if step_on(tf.gather(batches, k), seed, k):
                    break

        @tf.function(jit_compile=False)
        def run_last(order: tf.Tensor, seed: tf.Tensor) -> None:
            step_on(order[full_batches * batch_size :], seed, tf.constant(full_batches, tf.int64))

        @tf.function
        def pass_order(epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            seed = pass_seed(source.seed, epoch)
            return source.indices(seed, 0, examples), seed

        self._run_full, self._run_last, self._pass_order = run_full, run_last, pass_order

    def run(self, num_steps: int) -> None:
        step = int(self._state.step.numpy())
        epoch, first = divmod(step, self._steps_per_pass)
        if first + num_steps > self._steps_per_pass:
            raise ValueError(f"{num_steps} steps from step {step} would cross the end of pass {epoch}")
        if self._cached_order[0] != epoch:
            self._cached_order = (epoch, *self._pass_order(tf.constant(epoch, tf.int64)))
        _, order, seed = self._cached_order
        full_steps = min(first + num_steps, self._full_batches) - first
        if full_steps > 0:
            self._stop_at.assign(step + full_steps)
            self._run_full(order, seed)
        if full_steps < num_steps and int(self._state.bad_step.numpy()) < 0:
            self._run_last(order, seed)


class DistributedRunner:
    """Steps under a `tf.distribute` strategy, each a function of `state.step` alone.

    The draws of z use `step_seed` (on replica 0; the other replicas fold
    their index in), and the data restart at the step's batch after a restore
    (TensorFlow cannot checkpoint a distributed iterator): for an
    `ArraySource`, step s is batch s mod n of pass s div n, made as
    `ArrayRunner` makes it; any other pipeline is repeated and skipped to the
    step (`distribute.global_batches`). So a checkpoint resumes exactly, on any
    number of replicas.
    """

    def __init__(self, model, optimizer, config: TrainConfig, state: LoopState, data, strategy):
        self.checkpointables = {}
        self._strategy, self._state, self._data = strategy, state, data
        self._iterator = None
        loss = training_loss(config)
        gradients_fn = distribute.replicated_gradients(strategy)

        @tf.function
        def run_steps(iterator, num_steps: tf.Tensor) -> None:
            for _ in tf.range(num_steps):
                seed = step_seed(config, state.step)
                if checked_step(model, optimizer, state, next(iterator), seed, loss, config, gradients_fn=gradients_fn):
                    break

        self._run_steps = run_steps

    def run(self, num_steps: int) -> None:
        if self._iterator is None:  # after fit's restore: the data start at the restored step
            step = int(self._state.step.numpy())
            distribute.check_same_step(self._strategy, step)
            batches = distribute.global_batches(self._data, step, pass_seed)
            self._iterator = distribute.distributed_iterator(self._strategy, batches)
        self._run_steps(self._iterator, tf.constant(num_steps, tf.int64))


def make_runner(
    model: snt.Module, optimizer: snt.Optimizer, config: TrainConfig, state: LoopState, data,
    strategy: tf.distribute.Strategy | None = None, adversary: Adversary | None = None,
) -> Runner:
    """The runner for `data` (an `ArraySource` or a `tf.data.Dataset` of image batches) and config.distribute,
    training `adversary` too when there is one (one device only: config refuses train.factor_weight with
    train.distribute other than "default")."""
    if config.distribute != "default":
        if adversary is not None:
            raise ValueError("an adversary (train.factor_weight > 0) trains on one device: set train.distribute=default")
        return DistributedRunner(model, optimizer, config, state, data, strategy)
    if isinstance(data, ArraySource):
        return ArrayRunner(model, optimizer, config, state, data, adversary=adversary)
    return IteratorRunner(model, optimizer, config, state, data, adversary=adversary)


__all__ = ["ArrayRunner", "DistributedRunner", "IteratorRunner", "Runner", "make_runner", "pass_seed", "step_seed"]
