"""Training speed of tfvae against a PyTorch reference of the same model, epochs interleaved.

    pip install -r benchmarks/requirements.txt     # torch 2.13.0 (CPU), into the env given as --torch-python
    python benchmarks/train_speed.py --torch-python /tmp/torchenv/bin/python            # ~6 minutes here
    python benchmarks/train_speed.py --torch-python /tmp/torchenv/bin/python --overheads  # + determinism, finite checks

Trains the default preset (mnist-bernoulli-20d: 784-400-20, batch 128, 469
steps an epoch) through `tfvae.fit` and the PyTorch reference
(benchmarks/torch_reference.py) for --epochs epochs each, alternating one
epoch of one with one epoch of the other, each in its own process, so both
see the same load. A tfvae epoch is everything `fit` does in it: the steps,
the test ELBO, the history row and the checkpoint; a PyTorch epoch is its
steps and its test pass. The first epoch of each (tfvae: setup and tracing)
is reported apart; the steady state is the median of the others.

Prints the median seconds per epoch of each, their ratio, the final test
negative ELBOs (nats per image), and tfvae's fraction of the GEMM-limited
rate: the epoch's matrix-product FLOPs (training steps and test pass) at the
rate of a large float32 `tf.linalg.matmul`, measured between the epochs in
the tfvae process. With --overheads two more tfvae processes join the
rotation: one with train.deterministic (op determinism), one with the
non-finite checks removed (the benchmark's own patch of
`tfvae.runners.ArrayRunner`, there is no user switch).
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
PRESET = "mnist-bernoulli-20d"
GEMM_SIZE = 2048  # n of the n x n x n float32 product whose rate is the GEMM limit


# --------------------------------------------------------------------------- the tfvae worker
def tfvae_worker(run_dir: str, variant: str, epochs: int) -> None:
    """Runs `fit` in a thread that pauses at each epoch end; answers "epoch" and "gemm" on stdin."""
    import tensorflow as tf

    import tfvae
    from tfvae import objectives, runners

    changes = {"train.epochs": epochs}
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
    objectives.average_terms = timed(objectives.average_terms)
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
            a = tf.random.normal([GEMM_SIZE, GEMM_SIZE])
            tf.linalg.matmul(a, a).numpy()
            repeats, started = 10, time.perf_counter()
            for _ in range(repeats):
                product = tf.linalg.matmul(a, a)
            product.numpy()
            seconds = (time.perf_counter() - started) / repeats
            print(json.dumps({"gflops": 2 * GEMM_SIZE**3 / seconds / 1e9}), flush=True)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--torch-python", default=sys.executable, help="a Python with benchmarks/requirements.txt")
    parser.add_argument("--seed", type=int, default=1, help="the PyTorch reference's seed")
    parser.add_argument("--torch-spin", action="store_true", help="leave PyTorch's OpenMP wait policy as it is")
    parser.add_argument("--overheads", action="store_true", help="also time train.deterministic and no finite checks")
    parser.add_argument("--worker", nargs=2, metavar=("RUN_DIR", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        tfvae_worker(*args.worker, args.epochs)
        return 0

    sys.path.insert(0, str(HERE.parent))
    from tfvae import data

    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        import numpy as np

        for split in ("train", "test"):
            np.save(f"{tmp}/{split}.npy", data.load_arrays("mnist", split)[0][..., 0])
        variants = ["default"] + (["deterministic", "unchecked"] if args.overheads else [])
        workers = {
            f"tfvae {variant}": Worker([sys.executable, __file__, "--epochs", str(args.epochs),
                                        "--worker", f"{tmp}/run-{variant}", variant])
            for variant in variants
        }
        # OpenMP threads that spin while they wait made PyTorch ~30x slower on this shared 2-core machine
        # (0.9 s a step instead of 30 ms): give the reference its best chance, unless --torch-spin.
        environment = {} if args.torch_spin else {"OMP_WAIT_POLICY": "PASSIVE"}
        workers["torch"] = Worker([args.torch_python, str(HERE / "torch_reference.py"), tmp, str(args.seed)],
                                  environment)
        times = {name: [] for name in workers}
        train_times = {name: [] for name in workers}
        losses, gemm = {}, []
        try:
            for epoch in range(1, args.epochs + 1):
                for name, worker in workers.items():
                    answer = worker.ask("epoch")
                    times[name].append(answer["seconds"])
                    train_times[name].append(answer["train_seconds"])
                    losses[name] = answer["test_loss"]
                gemm.append(workers["tfvae default"].ask("gemm")["gflops"])
                print(f"epoch {epoch}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in workers)
                      + f"; GEMM {gemm[-1]:.0f} GFLOP/s", flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    report(times, train_times, losses, gemm)
    return 0


def report(times: dict, train_times: dict, losses: dict, gemm: list) -> None:
    steady = {name: statistics.median(values[1:]) for name, values in times.items() if len(values) > 1}
    steady_train = {name: statistics.median(values[1:]) for name, values in train_times.items() if len(values) > 1}
    print(f"\nseconds per epoch, median of epochs 2..{len(times['torch'])} (first epoch apart):")
    for name, values in times.items():
        print(f"  {name:20s} {steady[name]:6.2f} s   first epoch {values[0]:6.2f} s   "
              f"final test -ELBO {losses[name]:.2f} nats")
    ratio = steady["torch"] / steady["tfvae default"]
    train_ratio = steady_train["torch"] / steady_train["tfvae default"]
    print(f"training steps alone (the epoch without its test pass): tfvae {steady_train['tfvae default']:.2f} s, "
          f"torch {steady_train['torch']:.2f} s an epoch: tfvae / torch steps per second {train_ratio:.2f}x")
    limit = epoch_flops() / (statistics.median(gemm) * 1e9)
    print(f"whole epochs (steps, test pass, history and checkpoint): tfvae / torch {ratio:.2f}x")
    print(f"tfvae compile and setup in its first epoch: {times['tfvae default'][0] - steady['tfvae default']:.2f} s")
    print(f"GEMM-limited epoch: {limit:.2f} s ({epoch_flops() / 1e9:.0f} GFLOP at {statistics.median(gemm):.0f} "
          f"GFLOP/s); tfvae reaches {limit / steady['tfvae default']:.0%} of it, torch {limit / steady['torch']:.0%}")
    print(f"final test -ELBO, tfvae - torch: {losses['tfvae default'] - losses['torch']:+.2f} nats")
    for variant in ("deterministic", "unchecked"):
        if f"tfvae {variant}" in steady:
            change = steady["tfvae default"] / steady[f"tfvae {variant}"] - 1 if variant == "unchecked" else \
                steady[f"tfvae {variant}"] / steady["tfvae default"] - 1
            what = "op determinism costs" if variant == "deterministic" else "the non-finite checks cost"
            print(f"{what} {change:+.1%} per epoch "
                  f"({steady[f'tfvae {variant}']:.2f} s vs {steady['tfvae default']:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
