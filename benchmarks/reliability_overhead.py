"""What the reliability features cost: seconds per epoch with and without the
non-finite checks, and with and without TensorFlow op determinism.

    .venv/bin/python benchmarks/reliability_overhead.py [--rounds 3] [--epochs 2]

The default preset (784-400-20, batch 128, 469 steps an epoch) on MNIST. Each
round starts two worker processes, one with `tf.config.experimental.
enable_op_determinism()` (it cannot be switched off within a process) and one
without; each worker times whole epochs of `tfvae.train.make_train_loop`
(checks on) alternating with the same loop written without the checks. The
figures printed are medians over all timed epochs, and the ratios of those
medians measured in the same processes (timings on a shared machine drift,
ratios much less).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(deterministic: bool, epochs: int) -> dict:
    """Times `epochs` epochs each of the checked and the unchecked loop; returns {variant: [seconds]}."""
    import tensorflow as tf

    import tfvae
    from tfvae import model as model_lib
    from tfvae import objectives, train

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    experiment = tfvae.preset("mnist-bernoulli-20d")
    settings = experiment.train
    tf.random.set_seed(settings.seed)
    dataset = tfvae.load("mnist", "train", batch_size=experiment.data.batch_size, binarize="threshold",
                         shuffle=True, seed=settings.seed, prefetch=False)
    steps_per_epoch = int(dataset.cardinality().numpy())
    iterator = iter(dataset.repeat().prefetch(2))  # as fit builds it
    model = model_lib.build(experiment.model, (28, 28, 1))
    model(tf.zeros([1, 28, 28, 1]))
    optimizer = train.build_optimizer(model, settings.learning_rate)
    rng = tf.random.Generator.from_seed(settings.seed)
    state = train.LoopState()
    checked = train.make_train_loop(model, optimizer, settings, rng, state)

    @tf.function
    def unchecked(iterator, num_steps):
        for _ in tf.range(num_steps):
            images = next(iterator)
            weight = objectives.kl_weight(settings, state.step)
            terms, gradients = train.loss_and_gradients(model, images, settings, weight,
                                                        rng.uniform_full_int([2], tf.int32))
            optimizer.learning_rate.assign(train.learning_rate(settings, state.step))
            optimizer.apply(gradients, model.trainable_variables)
            size = tf.cast(tf.shape(images)[0], tf.float32)
            state.sums.assign_add(size * tf.stack(terms))
            state.count.assign_add(size)
            state.step.assign_add(1)

    loops = {"checks": checked, "no checks": unchecked}
    for loop in loops.values():  # trace and warm up
        loop(iterator, tf.constant(20, tf.int64))
    times = {name: [] for name in loops}
    for _ in range(epochs):
        for name, loop in loops.items():
            started = time.perf_counter()
            loop(iterator, tf.constant(steps_per_epoch, tf.int64))
            state.take_interval_means()  # reads back, so the timed work has finished
            times[name].append(time.perf_counter() - started)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each loop per worker")
    parser.add_argument("--worker", choices=["deterministic", "default"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker == "deterministic", args.epochs)))
        return 0
    results: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for mode in ("default", "deterministic"):
            output = subprocess.run([sys.executable, __file__, "--worker", mode, "--epochs", str(args.epochs)],
                                    capture_output=True, text=True, check=True).stdout
            for loop, seconds in json.loads(output.strip().splitlines()[-1]).items():
                results.setdefault(f"{loop}, {mode}", []).extend(seconds)
            print(f"round {round_ + 1} {mode}: done", file=sys.stderr, flush=True)
    medians = {name: statistics.median(seconds) for name, seconds in results.items()}
    for name, seconds in results.items():
        print(f"{name:28s} median {medians[name]:.2f} s/epoch over {len(seconds)} epochs "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f})")
    base = medians["checks, default"]
    print(f"non-finite checks: {base / medians['no checks, default'] - 1:+.1%} s/epoch "
          f"(checks {base:.2f} vs none {medians['no checks, default']:.2f})")
    print(f"op determinism:    {medians['checks, deterministic'] / base - 1:+.1%} s/epoch "
          f"(on {medians['checks, deterministic']:.2f} vs off {base:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
