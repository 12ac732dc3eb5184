"""Training speed of tfvae against a PyTorch reference of the same model, and the seed protocol's final numbers.

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install -r benchmarks/requirements.txt   # once
    python benchmarks/train_speed.py --torch-python /tmp/torchenv/bin/python              # ~12 minutes here
    python benchmarks/train_speed.py --torch-python /tmp/torchenv/bin/python --overheads  # + determinism, checks

For each seed of --seeds (default 1, 2, 3: the seed protocol, the same seeds
for both), trains the default preset (mnist-bernoulli-20d: 784-400-20,
batch 128, 469 steps an epoch) through `tfvae.fit` with `train.seed` set to
it, and the PyTorch reference (benchmarks/torch_reference.py) with
`torch.manual_seed` set to it, for --epochs epochs each, alternating one
epoch of one with one epoch of the other, each in its own process, so both
see the same load. A tfvae epoch is everything `fit` does in it: the steps,
the test ELBO, the history row and the checkpoint; a PyTorch epoch is its
steps and its test pass. The first epoch of each (tfvae: setup and tracing)
is reported apart; a seed's steady state is the median of the others.

Writes benchmarks/results/train_speed.json (or --out) with its provenance
(tools/provenance.py): per seed, each run's median seconds per epoch, the
ratios of the two (measured in the same interleaved run), the final test
negative ELBO (nats per image) and tfvae's fraction of the GEMM-limited
rate (the epoch's matrix-product FLOPs at the rate of a large float32
`tf.linalg.matmul`, measured between the epochs in the tfvae process); the
medians of those over seeds; and the seed protocol: the mean, sample
standard deviation and range of each framework's final numbers over the
seeds. With --overheads two more tfvae processes join each seed's rotation:
one with train.deterministic (op determinism), one with the non-finite
checks removed (the benchmark's own patch of `tfvae.runners.ArrayRunner`,
there is no user switch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import provenance  # tools/provenance.py: the GEMM rate, the results file's provenance
PRESET = "mnist-bernoulli-20d"
PUBLISHED_NEGATIVE_ELBO = 87.65  # walkthrough 003's PyTorch run (one seed, 199), nats per test image


# --------------------------------------------------------------------------- the tfvae worker
def tfvae_worker(run_dir: str, variant: str, epochs: int, seed: int) -> None:
    """Runs `fit` in a thread that pauses at each epoch end; answers "epoch" and "gemm" on stdin."""
    import tfvae
    from tfvae import evaluation, runners

    changes = {"train.epochs": epochs, "train.seed": seed}
    if variant == "deterministic":
        changes["train.deterministic"] = True
    if variant == "unchecked":
        original = runners.ArrayRunner
        runners.ArrayRunner = lambda *args, **kwargs: original(*args, **kwargs, check_finite=False)
    experiment = tfvae.override(tfvae.preset(PRESET), changes)
    test_seconds = []

    def timed(test_pass):
        def timed_test_pass(*args, **kwargs):
            started = time.perf_counter()
            terms = test_pass(*args, **kwargs)
            test_seconds.append(time.perf_counter() - started)
            return terms

        return timed_test_pass

    # fit's end-of-epoch test ELBO: over the images held in memory, or over the pipeline.
    make_averager = evaluation.terms_averager
    evaluation.terms_averager = lambda model: timed(make_averager(model))
    resume, results = threading.Semaphore(0), []
    ended = threading.Event()
    clock = {"start": 0.0}

    def at_epoch_end(step, model, row):
        if float(row["epoch"]).is_integer():
            seconds = time.perf_counter() - clock["start"]
            results.append({"seconds": seconds, "train_seconds": seconds - test_seconds[-1], "test_loss": row["test_loss"]})
            resume.acquire()

    def run():
        try:
            tfvae.fit(experiment, run_dir, hooks=[at_epoch_end], progress=False)
        finally:
            ended.set()

    thread = None
    for command in sys.stdin:
        command = command.strip()
        if command == "epoch":
            count = len(results)
            clock["start"] = time.perf_counter()
            if thread is None:
                thread = threading.Thread(target=run, daemon=True)
                thread.start()
            else:
                resume.release()
            while len(results) == count and not ended.is_set():
                time.sleep(0.001)
            print(json.dumps(results[-1] if len(results) > count else {"error": "fit ended"}), flush=True)
        elif command == "gemm":
            print(json.dumps({"gflops": provenance.gemm_gflops()}), flush=True)
        else:
            resume.release()
            break


# --------------------------------------------------------------------------- the driver
class Worker:
    """A child process that answers one JSON line per command."""

    def __init__(self, command: list[str], environment: dict | None = None):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, **(environment or {})})

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args} ended without answering {command!r}")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self.process.wait(timeout=60)


def epoch_flops(hidden: int = 400, latent: int = 20, pixels: int = 784, train: int = 60000, test: int = 10000) -> float:
    """Matrix-product FLOPs of one epoch: forward, backward (no input gradient of the first layer), test forward."""
    macs = pixels * hidden + hidden * 2 * latent + latent * hidden + hidden * pixels  # forward, per image
    return 2 * (train * (3 * macs - pixels * hidden) + test * macs)


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation, min and max of a seed protocol's final numbers."""
    return {"values": values, "mean": statistics.mean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def run_seed(seed: int, args, tmp: str) -> dict:
    """One seed: tfvae (and its --overheads variants) and the reference, one epoch of each in turn."""
    variants = ["default"] + (["deterministic", "unchecked"] if args.overheads else [])
    workers = {
        f"tfvae {variant}": Worker([sys.executable, __file__, "--epochs", str(args.epochs),
                                    "--worker", f"{tmp}/run-{variant}-s{seed}", variant, str(seed)])
        for variant in variants
    }
    # OpenMP threads that spin while they wait made PyTorch ~30x slower on this shared 2-core machine
    # (0.9 s a step instead of 30 ms): give the reference its best chance, unless --torch-spin.
    environment = {} if args.torch_spin else {"OMP_WAIT_POLICY": "PASSIVE"}
    workers["torch"] = Worker([args.torch_python, str(HERE / "torch_reference.py"), tmp, str(seed)], environment)
    times = {name: [] for name in workers}
    train_times = {name: [] for name in workers}
    losses, gemm, torch_version = {}, [], None
    try:
        for epoch in range(1, args.epochs + 1):
            for name, worker in workers.items():
                answer = worker.ask("epoch")
                times[name].append(answer["seconds"])
                train_times[name].append(answer["train_seconds"])
                losses[name] = answer["test_loss"]
                torch_version = answer.get("torch_version", torch_version)
            gemm.append(workers["tfvae default"].ask("gemm")["gflops"])
            print(f"seed {seed} epoch {epoch}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in workers)
                  + f"; GEMM {gemm[-1]:.0f} GFLOP/s", flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    return seed_summary(seed, times, train_times, losses, gemm, torch_version)


def seed_summary(seed: int, times: dict, train_times: dict, losses: dict, gemm: list, torch_version) -> dict:
    """Medians of epochs 2..n for each worker, the ratios of the same seed's interleaved runs, final -ELBOs."""
    runs = {}
    for name in times:
        runs[name] = {
            "epoch_seconds": statistics.median(times[name][1:]),
            "steps_seconds": statistics.median(train_times[name][1:]),
            "first_epoch_seconds": times[name][0],
            "final_test_negative_elbo": losses[name],
        }
    tfvae_run, torch_run = runs["tfvae default"], runs["torch"]
    gflops = statistics.median(gemm)
    limit = epoch_flops() / (gflops * 1e9)
    summary = {
        "seed": seed, "runs": runs, "torch_version": torch_version, "gemm_gflops": gflops,
        "gemm_limit_seconds": limit,
        "steps_ratio": torch_run["steps_seconds"] / tfvae_run["steps_seconds"],
        "epoch_ratio": torch_run["epoch_seconds"] / tfvae_run["epoch_seconds"],
        "tfvae_setup_seconds": tfvae_run["first_epoch_seconds"] - tfvae_run["epoch_seconds"],
        "tfvae_gemm_percent": 100 * limit / tfvae_run["epoch_seconds"],
        "torch_gemm_percent": 100 * limit / torch_run["epoch_seconds"],
    }
    if "tfvae unchecked" in runs:
        unchecked, deterministic = runs["tfvae unchecked"], runs["tfvae deterministic"]
        summary["finite_checks_percent"] = 100 * (tfvae_run["epoch_seconds"] / unchecked["epoch_seconds"] - 1)
        summary["determinism_percent"] = 100 * (deterministic["epoch_seconds"] / tfvae_run["epoch_seconds"] - 1)
    return summary


def combine(per_seed: list[dict], epochs: int) -> dict:
    """The results file's numbers: per seed, medians over seeds of the speed figures, and the seed protocol."""
    def median(key: str) -> float:
        return statistics.median(seed[key] for seed in per_seed)

    def median_run(name: str, key: str) -> float:
        return statistics.median(seed["runs"][name][key] for seed in per_seed)

    speed = {key: median(key) for key in per_seed[0] if key not in ("seed", "runs", "torch_version")}
    for name, label in (("tfvae default", "tfvae"), ("torch", "torch")):
        for key in ("epoch_seconds", "steps_seconds", "first_epoch_seconds"):
            speed[f"{label}_{key}"] = median_run(name, key)
    finals = {label: spread([seed["runs"][name]["final_test_negative_elbo"] for seed in per_seed])
              for name, label in (("tfvae default", "tfvae"), ("torch", "torch"))}
    finals["tfvae_minus_torch_mean"] = finals["tfvae"]["mean"] - finals["torch"]["mean"]
    finals["published"] = PUBLISHED_NEGATIVE_ELBO
    return {"preset": PRESET, "epochs": epochs, "seeds": [seed["seed"] for seed in per_seed],
            "torch_version": per_seed[0]["torch_version"], "epoch_gflop": epoch_flops() / 1e9,
            "speed_median_over_seeds": speed, "final_test_negative_elbo": finals, "per_seed": per_seed}


def report(results: dict) -> None:
    speed, finals = results["speed_median_over_seeds"], results["final_test_negative_elbo"]
    print(f"\nmedians over seeds {results['seeds']} of each seed's medians of epochs 2..{results['epochs']}:")
    print(f"  training steps: tfvae {speed['tfvae_steps_seconds']:.2f} s, torch {speed['torch_steps_seconds']:.2f} s "
          f"an epoch; tfvae / torch steps per second {speed['steps_ratio']:.2f}x")
    print(f"  whole epochs: tfvae {speed['tfvae_epoch_seconds']:.2f} s, torch {speed['torch_epoch_seconds']:.2f} s; "
          f"{speed['epoch_ratio']:.2f}x")
    print(f"  tfvae first epoch {speed['tfvae_first_epoch_seconds']:.2f} s ({speed['tfvae_setup_seconds']:.1f} s setup "
          f"and compilation); GEMM-limited epoch {speed['gemm_limit_seconds']:.2f} s at {speed['gemm_gflops']:.0f} "
          f"GFLOP/s: tfvae {speed['tfvae_gemm_percent']:.0f}%, torch {speed['torch_gemm_percent']:.0f}%")
    if "finite_checks_percent" in speed:
        print(f"  non-finite checks {speed['finite_checks_percent']:+.1f}% per epoch, "
              f"op determinism {speed['determinism_percent']:+.1f}%")
    for name in ("tfvae", "torch"):
        final = finals[name]
        print(f"final test -ELBO, {name}: {final['mean']:.2f} +- {final['sd']:.2f} (sd; "
              + ", ".join(f"{value:.2f}" for value in final["values"]) + ")")
    print(f"tfvae - torch, means: {finals['tfvae_minus_torch_mean']:+.2f} nats")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--torch-python", default=sys.executable, help="a Python with benchmarks/requirements.txt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="the seed protocol: each seed trains tfvae and the reference once, interleaved")
    parser.add_argument("--torch-spin", action="store_true", help="leave PyTorch's OpenMP wait policy as it is")
    parser.add_argument("--overheads", action="store_true", help="also time train.deterministic and no finite checks")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_speed.json")
    parser.add_argument("--worker", nargs=3, metavar=("RUN_DIR", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        tfvae_worker(args.worker[0], args.worker[1], args.epochs, int(args.worker[2]))
        return 0

    sys.path.insert(0, str(HERE.parent))
    import numpy as np

    from tfvae import data

    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        for split in ("train", "test"):
            np.save(f"{tmp}/{split}.npy", data.load_arrays("mnist", split)[0][..., 0])
        per_seed = [run_seed(seed, args, tmp) for seed in args.seeds]
    results = combine(per_seed, args.epochs)
    report(results)
    provenance.write_json(args.out, results, "benchmarks/train_speed.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
