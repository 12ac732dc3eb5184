"""What the reliability features cost: seconds per epoch with and without the
non-finite checks, and with and without TensorFlow op determinism.

    .venv/bin/python benchmarks/reliability_overhead.py [--rounds 3] [--epochs 2]

The default preset (784-400-20, batch 128, 469 steps an epoch) on MNIST. Each
round starts two worker processes, one with `tf.config.experimental.
enable_op_determinism()` (it cannot be switched off within a process) and one
without; each worker times whole epochs of `tfvae.runners.ArrayRunner`
(what `fit` runs on in-memory data) with the checks, alternating with the
same runner built with `check_finite=False`. The
figures printed are medians over all timed epochs, and the ratios of those
medians measured in the same processes (timings on a shared machine drift,
ratios much less). Writes them with their provenance (tools/provenance.py)
to benchmarks/results/reliability_overhead.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(deterministic: bool, epochs: int) -> dict:
    """Times `epochs` epochs each of the checked and the unchecked runner; returns {variant: [seconds]}."""
    import tensorflow as tf

    import tfvae
    from tfvae import optimizers, rundir, runners
    from tfvae import model as model_lib
    from tfvae import step as step_lib

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    experiment = tfvae.preset("mnist-bernoulli-20d")
    settings = experiment.train
    tf.random.set_seed(settings.seed)
    source = rundir.load_split(experiment, "train")  # in memory: fit's array runner
    loops, states = {}, {}
    for name, check_finite in (("checks", True), ("no checks", False)):
        model = model_lib.build(experiment.model, (28, 28, 1))
        model(tf.zeros([1, 28, 28, 1]))
        optimizer = optimizers.build_optimizer(model, settings.learning_rate)
        states[name] = step_lib.LoopState()
        loops[name] = runners.ArrayRunner(model, optimizer, settings, states[name], source, check_finite)
    for name, runner in loops.items():  # compile and warm up: one epoch each
        runner.run(source.num_batches)
    times = {name: [] for name in loops}
    for _ in range(epochs):
        for name, runner in loops.items():
            started = time.perf_counter()
            runner.run(source.num_batches)
            states[name].take_interval_means()  # reads back, so the timed work has finished
            times[name].append(time.perf_counter() - started)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each loop per worker")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "reliability_overhead.json")
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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import provenance

    provenance.write_json(args.out, {
        "median_seconds_per_epoch": medians, "epochs": results,
        "finite_checks_percent": 100 * (base / medians["no checks, default"] - 1),
        "determinism_percent": 100 * (medians["checks, deterministic"] / base - 1),
    }, "benchmarks/reliability_overhead.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
