"""Seconds per epoch of `fit` on the default preset for two source trees (e.g. before and after a refactor).

    git worktree add /tmp/before <rev>      # the reference tree
    .venv/bin/python benchmarks/ab_speed.py --before /tmp/before --after . --epochs 6 --rounds 3

Each round trains the default preset (mnist-bernoulli-20d, seed 2) for
--epochs in a fresh process for each tree, the trees alternating, so a
machine that slows down slows both. The figure is the median, over rounds and
epochs 2..n, of the wall time between epoch ends (training steps, the test
pass and the checkpoint), and the ratio after / before; the final test
-ELBO of each run is kept too (the same code path gives the same number).
Writes benchmarks/results/ab_speed.json with both trees' commits and the provenance (tools/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = """
import sys, tfvae
experiment = tfvae.override(tfvae.preset("mnist-bernoulli-20d"), {"train.epochs": int(sys.argv[2])})
tfvae.fit(experiment, sys.argv[1], progress=False)
"""


def commit(tree: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()


def epoch_seconds(tree: Path, epochs: int) -> tuple[list[float], float]:
    """(seconds between epoch ends for epochs 2..n, final test -ELBO) of one fresh run of `tree`'s tfvae."""
    import pandas as pd

    run_dir = tempfile.mkdtemp(prefix="ab-speed-")
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", TRAIN, run_dir, str(epochs)], env=env, check=True, capture_output=True)
    history = pd.read_csv(Path(run_dir) / "history.csv").dropna(subset=["test_loss"])
    wall = history["wall_time"].to_numpy()
    return [float(x) for x in wall[1:] - wall[:-1]], float(history["test_loss"].iloc[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ab_speed.json")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    seconds, final = {name: [] for name in trees}, {name: [] for name in trees}
    for round_number in range(args.rounds):
        for name, tree in trees.items():
            epochs, loss = epoch_seconds(tree, args.epochs)
            seconds[name] += epochs
            final[name].append(loss)
            print(f"round {round_number} {name}: {[round(s, 2) for s in epochs]} s, test -ELBO {loss:.4f}", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "median_seconds_per_epoch": median, "ratio_after_over_before": median["after"] / median["before"],
        "final_test_negative_elbo": final, "epochs_timed_per_tree": {k: len(v) for k, v in seconds.items()},
        "commits": {name: commit(tree) for name, tree in trees.items()},
    }
    print(json.dumps(result, indent=2))
    sys.path.insert(0, str(HERE.parent / "tools"))
    import provenance

    provenance.write_json(args.out, result, "benchmarks/ab_speed.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
