"""Data-parallel training: a strategy from `train.distribute`, and a step that splits a global batch over replicas.

    strategy = distribute.build_strategy("mirrored")          # every local GPU (the CPU if none)
    model, optimizer = distribute.build_replicated(strategy, experiment.model, image_shape, make_optimizer)
    step = distribute.make_distributed_step(strategy, model, optimizer, experiment.train)
    for images in strategy.experimental_distribute_dataset(dataset):   # dataset batched at the GLOBAL batch size
        terms, finite = step(images, step_number, seed)

Strategies (`STRATEGIES`): "default" is TensorFlow's default strategy (one
device, what `fit` does today); "mirrored" is `tf.distribute.MirroredStrategy`
over the local GPUs; "multi_worker" is `tf.distribute.MultiWorkerMirroredStrategy`
over the machines that the TF_CONFIG environment variable lists (every
machine runs the same command; see docs/scale_out.md).

Why this combination. Sonnet's optimizers refuse to run under any strategy
but its own `snt.distribute.Replicator` (one machine only) and TpuReplicator:
`apply` checks `tf.distribute.has_strategy()`. Keras optimizers would work
under both Mirrored strategies, but they are another Adam (epsilon placed
differently) with other checkpoint slots, so a distributed run would neither
match nor resume a single-device one. Instead:

1. the model's variables are created inside `strategy.scope()`, so they are
   `MirroredVariable`s: one copy per replica, kept equal by the strategy;
2. each replica computes `objectives.training_terms` on its share of the
   global batch and the gradient of its loss scaled by local / global batch
   size, so the SUM over replicas is the gradient of the global batch mean
   whatever the number of replicas (and however unevenly a last batch splits);
3. the replicas all-reduce (SUM) their gradients, across machines too for
   multi_worker, and the step takes the first local copy of the sums back
   into cross-replica context, outside any strategy scope, where the one
   Sonnet Adam applies them: assigning a MirroredVariable in cross-replica
   context writes the same value to every copy. The Adam
   slots are ordinary variables, made eagerly before tracing (as `fit` does),
   and each machine updates its own copy from the same all-reduced gradients.

So it is the same Sonnet Adam, the same update and the same checkpoint layout
(a MirroredVariable saves as one tensor) with 1, 2 or 16 replicas: a run can
resume on another number of devices. The cost is that the Adam update runs on
one device per machine and is copied to the others, negligible for these
models (the 784-400-20 VAE has 0.65 M parameters). Two things do depend on
the replica count: the draws of z (each replica folds its index into the
step's seed, so 1 replica draws what `fit` draws and 2 replicas draw other,
equally distributed, noise), and free bits, whose per-dimension floor applies
to each replica's batch mean rather than the global one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import sonnet as snt
import tensorflow as tf

from tfvae import model as model_lib
from tfvae import objectives
from tfvae.config import STRATEGIES, ModelConfig, TrainConfig
from tfvae.model import VAE

SUM = tf.distribute.ReduceOp.SUM


class DistributeError(ValueError):
    """A strategy cannot be built here (unknown name, a missing or malformed TF_CONFIG)."""


def build_strategy(name: str, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """The strategy `name` (one of STRATEGIES) names.

    Args:
      name: "default", "mirrored" or "multi_worker".
      devices: for "mirrored" only, the devices to replicate over (e.g.
        ["/CPU:0", "/CPU:1"]); default every local GPU, or the CPU when there is none.

    Raises:
      DistributeError: an unknown name, or "multi_worker" without a usable TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise DistributeError(f"train.distribute must be one of {', '.join(STRATEGIES)}; got {name!r}")


def check_tf_config(text: str | None) -> dict:
    """The parsed TF_CONFIG of a multi-worker run; a DistributeError says what is missing.

    It must name the workers and this process's place among them, e.g.
    {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.
    """
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not text:
        raise DistributeError(f"train.distribute=multi_worker needs the TF_CONFIG environment variable, e.g. {example}")
    try:
        values = json.loads(text)
        workers = values["cluster"]["worker"]
        task = values["task"]
        index = task["index"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DistributeError(f"TF_CONFIG must look like {example}; got {text!r} ({error!r})") from error
    if not isinstance(workers, list) or not workers:
        raise DistributeError(f"TF_CONFIG's cluster.worker must be a non-empty list of host:port; got {workers!r}")
    if task.get("type") not in ("worker", "chief") or not isinstance(index, int) or not 0 <= index < len(workers):
        raise DistributeError(f"TF_CONFIG's task must be a worker with an index below {len(workers)}; got {task!r}")
    return values


def build_replicated(
    strategy: tf.distribute.Strategy,
    config: ModelConfig,
    image_shape: Sequence[int],
    make_optimizer: Callable[[VAE], snt.Optimizer],
) -> tuple[VAE, snt.Optimizer]:
    """The model with mirrored weights, and its optimizer with slots made now, outside the strategy's scope.

    `make_optimizer(model)` must create the slots eagerly (`tfvae.train.build_optimizer` does).
    """
    with strategy.scope():
        vae = model_lib.build(config, image_shape)
        vae(tf.zeros([1, *image_shape]))
    return vae, make_optimizer(vae)


def make_distributed_step(
    strategy: tf.distribute.Strategy, model: VAE, optimizer: snt.Optimizer, settings: TrainConfig
) -> Callable[[object, tf.Tensor, tf.Tensor], tuple[objectives.Terms, tf.Tensor]]:
    """A compiled step (distributed images, global step, seed [2] int32) -> (terms, finite).

    `images` comes from `strategy.experimental_distribute_dataset` over
    batches of the global batch size. `terms` are the global batch means
    (nats per image) of `objectives.training_terms`; `finite` is a [4] bool
    vector: loss, reconstruction, kl and all gradients finite (the order of
    `tfvae.train.CHECKED_TERMS`). When any is False no update is applied; the
    caller stops or skips, as `train.on_nonfinite` says.
    """

    def replica_step(images: tf.Tensor, weight: tf.Tensor, seed: tf.Tensor):
        context = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(images)[0], tf.float32)
        share = local / context.all_reduce(SUM, local)
        with tf.GradientTape() as tape:
            terms = objectives.training_terms(model, images, settings, weight, _replica_seed(seed, context))
            scaled = terms.loss * share
        gradients = tape.gradient(scaled, model.trainable_variables)
        # One batched all-reduce over every replica of every machine; each replica then holds the sums.
        return context.all_reduce(SUM, (gradients, tf.stack(terms) * share))

    @tf.function
    def step(images, step_number: tf.Tensor, seed: tf.Tensor) -> tuple[objectives.Terms, tf.Tensor]:
        weight = objectives.kl_weight(settings, step_number)
        summed = strategy.run(replica_step, args=(images, weight, seed))
        gradients, terms = strategy.experimental_local_results(summed)[0]  # every replica's copy is the same
        finite = tf.concat(
            [tf.math.is_finite(terms), [tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])]], 0
        )
        if tf.reduce_all(finite):
            optimizer.apply(gradients, model.trainable_variables)  # cross-replica context: see the module docstring
        return objectives.Terms(*tf.unstack(terms)), finite

    return step


def _replica_seed(seed: tf.Tensor, context: tf.distribute.ReplicaContext) -> tf.Tensor:
    """The step's seed on replica 0 (one replica draws what `fit` draws); elsewhere the replica index folded in."""
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    folded = tf.cast(tf.random.experimental.stateless_fold_in(seed, replica), seed.dtype)
    return tf.where(replica == 0, seed, folded)


__all__ = [
    "STRATEGIES",
    "DistributeError",
    "build_replicated",
    "build_strategy",
    "check_tf_config",
    "make_distributed_step",
]
