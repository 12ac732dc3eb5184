"""Data-parallel training: a strategy from `train.distribute`, and steps that split a global batch over replicas.

`tfvae.fit` runs a config with `train.distribute` "mirrored" or
"multi_worker" through `tfvae.runners.DistributedRunner`: the step is
`tfvae.step.train_step`, with `replicated_gradients(strategy)` as its
gradients function.

Strategies (`STRATEGIES`): "default" is TensorFlow's default strategy (one
device); "mirrored" is `tf.distribute.MirroredStrategy` over the local GPUs;
"multi_worker" is `tf.distribute.MultiWorkerMirroredStrategy` over the
machines that the TF_CONFIG environment variable lists (every machine runs
the same command; README, "GPU and many machines"). In a multi-worker run
only the chief writes the run directory (`is_chief`, `worker_run_dir`).

Why this combination. Sonnet's optimizers refuse to run under any strategy
but its own `snt.distribute.Replicator` (one machine only) and TpuReplicator:
`apply` checks `tf.distribute.has_strategy()`. Keras optimizers would work
under both Mirrored strategies, but they are another Adam (epsilon placed
differently) with other checkpoint slots, so a distributed run would neither
match nor resume a single-device one. Instead:

1. the model's variables are created inside `strategy.scope()`, so they are
   `MirroredVariable`s: one copy per replica, kept equal by the strategy;
2. each replica computes the training loss (`tfvae.step.training_loss`) on its share of the
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
step's seed, so 1 replica draws what `fit` draws on in-memory data and 2 replicas draw other,
equally distributed, noise), and free bits, whose per-dimension floor applies
to each replica's batch mean rather than the global one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import tensorflow as tf

from tfvae import data as data_lib
from tfvae import precision
from tfvae.config import STRATEGIES

SUM = tf.distribute.ReduceOp.SUM


class DistributeError(ValueError):
    """A strategy cannot be built here (unknown name, a missing or malformed TF_CONFIG)."""


def build_strategy(name: str, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """The strategy `name` (one of STRATEGIES) names; the same object for the same arguments in one process.

    Args:
      name: "default", "mirrored" or "multi_worker".
      devices: for "mirrored" only, the devices to replicate over (e.g.
        ["/CPU:0", "/CPU:1"]); default every local GPU, or when there is none
        every logical CPU device (one, unless the CPU was split with
        `tf.config.set_logical_device_configuration`).

    A process keeps one strategy of each kind (two MirroredStrategy objects
    reuse each other's collective keys; TensorFlow allows one
    MultiWorkerMirroredStrategy). "multi_worker" must be built before
    TensorFlow runs its first op: `fit` and `tfvae train` build it first thing.

    Raises:
      DistributeError: an unknown name, "multi_worker" without a usable
        TF_CONFIG, or "multi_worker" asked for after TensorFlow started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in STRATEGIES:
        raise DistributeError(f"train.distribute must be one of {', '.join(STRATEGIES)}; got {name!r}")
    key = (name, tuple(devices) if devices else None)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(name, devices)
    return _STRATEGIES[key]


_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}


def _new_strategy(name: str, devices: Sequence[str] | None) -> tf.distribute.Strategy:
    if name == "mirrored":
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    check_tf_config(os.environ.get("TF_CONFIG"))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise DistributeError(
            "train.distribute=multi_worker must be set up before TensorFlow runs anything: call "
            "tfvae.distribute.build_strategy('multi_worker') first thing in the program (tfvae train does)"
        ) from error


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


def replicated_gradients(strategy: tf.distribute.Strategy):
    """A `tfvae.step.train_step` gradients function that splits each global batch over the strategy's replicas.

    Each replica computes the loss on its share and the gradient of that
    loss scaled by local / global batch size; one all-reduce (SUM) gives every
    replica the gradients and terms of the global batch mean, whatever the
    number of replicas. The first local copy returns to cross-replica
    context, where `train_step` applies the update (see the module
    docstring). Returns (terms [3], gradients, images in the global batch).
    """

    def gradients_fn(model, batch, seed: tf.Tensor, loss, step, precision_name: str):
        def replica_step(batch, seed: tf.Tensor, step: tf.Tensor):
            context = tf.distribute.get_replica_context()
            local = tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)
            total = context.all_reduce(SUM, local)
            share = local / total
            with tf.GradientTape() as tape:
                terms = loss(model, batch, _replica_seed(seed, context), step)
                # A replica may get no images (a last batch smaller than the replica count): its
                # mean is NaN, its share 0; multiply_no_nan makes its part (and its gradient) 0.
                scaled = tf.math.multiply_no_nan(terms.loss, share)
            gradients = precision.gradients(tape, scaled, model.trainable_variables, precision_name)
            gradients, terms = context.all_reduce(SUM, (gradients, tf.math.multiply_no_nan(tf.stack(terms), share)))
            return gradients, terms, total

        summed = strategy.run(replica_step, args=(batch, seed, tf.convert_to_tensor(step)))
        gradients, terms, total = strategy.experimental_local_results(summed)[0]  # every replica's copy is the same
        return terms, gradients, total

    return gradients_fn


def global_batches(data, start: int, pass_seed: Callable[[int, tf.Tensor], tf.Tensor]) -> tf.data.Dataset:
    """The global batches of training steps start, start + 1, ... (endless), for `tfvae.runners.DistributedRunner`.

    For an `ArraySource` step s is batch k = s mod n of pass e = s div n,
    made as the one-device array runner makes it (order and binarization
    seeded by `pass_seed(source.seed, e)`): exact, and nothing to skip. For a
    `tf.data.Dataset` it is `dataset.repeat().skip(start)`: exact when each
    pass's order depends only on TF's global seed and the pass number (build
    the dataset right after `tf.random.set_seed(train.seed)`), and the skipped
    batches are made (not trained on) once at the restart.
    """
    if not isinstance(data, data_lib.ArraySource):
        return data.repeat().skip(start)
    batches = data.num_batches

    def batch(step: tf.Tensor):
        images, index = data.batch(pass_seed(data.seed, step // batches), step % batches)
        return data.element(images, index)

    return tf.data.Dataset.range(start, tf.int64.max).map(batch)


def distributed_iterator(strategy: tf.distribute.Strategy, batches: tf.data.Dataset):
    """An iterator over `batches` (global batches) that hands each replica its share."""
    options = tf.data.Options()
    # Every worker makes every global batch and keeps its replicas' parts (there are no files to split).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(batches.prefetch(2).with_options(options)))


def check_same_step(strategy: tf.distribute.Strategy, step: int) -> None:
    """A DistributeError unless every replica (on every worker) restored the same step.

    Workers that restored different checkpoints would wait on each other
    forever at the first step they do not share.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return  # one process: its replicas share one step counter

    def replica_steps() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_gather(tf.constant([step], tf.int64), 0)

    @tf.function
    def gather() -> tf.Tensor:
        return strategy.experimental_local_results(strategy.run(replica_steps))[0]

    steps = gather().numpy()
    if len(set(steps.tolist())) > 1:
        raise DistributeError(
            f"the workers restored different checkpoints (steps {sorted(set(steps.tolist()))}): a multi-worker run "
            "resumes only when every worker reads the chief's run directory (a shared file system)"
        )


# --------------------------------------------------------------------------- who writes what
def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run directory: the only process, or the multi-worker chief.

    The chief is the task of type "chief", or worker 0 when TF_CONFIG lists no chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and resolver.task_id == 0 and not has_chief)


@contextlib.contextmanager
def worker_run_dir(strategy: tf.distribute.Strategy, run_dir: str | os.PathLike) -> Iterator[Path]:
    """Where this process writes its run directory: `run_dir` for the chief, a scratch copy for other workers.

    Every worker of a MultiWorkerMirroredStrategy must save checkpoints (saving
    may involve collective ops), but only the chief's are kept: the others
    write theirs, their config.json and history.csv into a temporary
    directory, deleted at the end (TensorFlow's multi-worker checkpoint
    pattern). The scratch copy starts with the chief's checkpoints and
    history, so that every worker resumes from the same step; for that the
    run directory must be on a file system all workers read.
    """
    if is_chief(strategy):
        yield Path(run_dir)
        return
    index = strategy.cluster_resolver.task_id
    with tempfile.TemporaryDirectory(prefix=f"tfvae-worker{index}-") as scratch:
        _copy_resumable(Path(run_dir), Path(scratch))
        yield Path(scratch)


def _copy_resumable(run_dir: Path, scratch: Path) -> None:
    """The chief's config.json, history.csv and checkpoints (not a killed write's *_temp* leftovers)."""
    for name in ("config.json", "history.csv"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, scratch / name)
    if (run_dir / "checkpoints").is_dir():
        shutil.copytree(run_dir / "checkpoints", scratch / "checkpoints", ignore=shutil.ignore_patterns("*_temp*"))


def _replica_seed(seed: tf.Tensor, context: tf.distribute.ReplicaContext) -> tf.Tensor:
    """The step's seed on replica 0 (one replica draws what `fit` draws); elsewhere the replica index folded in."""
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    folded = tf.cast(tf.random.experimental.stateless_fold_in(seed, replica), seed.dtype)
    return tf.where(replica == 0, seed, folded)


__all__ = [
    "STRATEGIES",
    "DistributeError",
    "build_strategy",
    "check_same_step",
    "check_tf_config",
    "distributed_iterator",
    "global_batches",
    "is_chief",
    "replicated_gradients",
    "worker_run_dir",
]
