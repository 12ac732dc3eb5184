"""What an epoch's end costs each family: seconds of training steps against seconds of fit's epoch-end work.

    .venv/bin/python benchmarks/epoch_end_cost.py                 # the leaderboard's families, 5 epochs, ~6 min here
    .venv/bin/python benchmarks/epoch_end_cost.py --presets mnist-burda-vae mnist-burda-iwae5 --seeds 1 2 3

The leaderboard (benchmarks/loglik.py) counts minutes of fit's training loop,
which hold what fit does at every epoch's end: the test-set ELBO over the
10,000 test images, the history row and the checkpoint. That is a fixed cost
an epoch, so it is a larger share of a family with cheap epochs. This script
measures the share of a test pass every epoch (`train.test_every = 1`; the
presets now test every 25): each preset trains --epochs in a fresh run
directory with a history row every 100 steps (600 an epoch). The rows' gaps inside an epoch
are training steps only; the gap that starts at an epoch's end also holds the
end's work, which is that gap less the steps' pace. Both are medians over the
epochs after the second (the first two hold the compilation of the training
loop and of the test pass). Writes benchmarks/results/epoch_end_cost.csv (a
row per preset and seed, with the provenance: tools/provenance.py) and prints
it. Run it alone: a busy machine makes every gap longer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import provenance  # tools/provenance.py

FAMILIES = ("mnist-burda-vae", "mnist-burda-iwae5", "mnist-burda-iwae5-dreg", "mnist-burda-mixture",
            "mnist-burda-vampprior", "mnist-burda-two-layer", "mnist-burda-iaf", "mnist-burda-coupling",
            "mnist-burda-tcvae")
LOG_EVERY = 100  # steps between history rows: a divisor of the presets' 600 steps an epoch


def epoch_end_cost(history: pd.DataFrame, steps_per_epoch: int) -> dict:
    """Seconds of an epoch's training steps and of its end, from a history with rows inside each epoch.

    history: history.csv's rows (step, wall_time in seconds), several an epoch, rows at every epoch's end.
    Returns steps_seconds_per_epoch (the steps' median pace x steps_per_epoch), epoch_end_seconds (the median
    gap that starts at an epoch's end, less the steps' pace over its steps) and end_share (the end's share of a
    whole epoch), over the gaps that start after the second epoch's end.
    """
    step, wall = history["step"].to_numpy(float), history["wall_time"].to_numpy(float)
    order = np.argsort(step)
    step, wall = step[order], wall[order]
    starts, steps, seconds = step[:-1], np.diff(step), np.diff(wall)
    steady = starts >= 2 * steps_per_epoch
    after_end = steady & (starts % steps_per_epoch == 0)
    inside = steady & ~after_end
    if not after_end.any() or not inside.any():
        raise ValueError(f"need rows inside epochs and at least 3 epoch ends ({steps_per_epoch} steps an epoch); "
                         f"got rows at steps {step.astype(int).tolist()}")
    pace = statistics.median(seconds[inside] / steps[inside])  # seconds per step
    end = statistics.median(seconds[after_end] - pace * steps[after_end])
    whole = pace * steps_per_epoch
    return {"steps_seconds_per_epoch": whole, "epoch_end_seconds": end, "end_share": end / (whole + end)}


def measure(preset: str, seed: int, epochs: int, changes: Mapping[str, object] | None = None) -> dict:
    """Trains `preset` (with config `changes`) for `epochs` in a fresh temporary run directory; `epoch_end_cost`
    of its history."""
    import tfvae
    from tfvae import rundir

    settings = {"train.epochs": epochs, "train.seed": seed, "train.log_every": LOG_EVERY, "train.test_every": 1,
                **(changes or {})}
    experiment = tfvae.override(tfvae.preset(preset), settings)
    with tempfile.TemporaryDirectory() as run_root:
        result = tfvae.fit(experiment, Path(run_root) / "run", progress=False)
        steps_per_epoch = round(result.history["step"].max() / epochs)
        cost = epoch_end_cost(rundir.read_history(result.run_dir), steps_per_epoch)
    return {"preset": preset, "seed": seed, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
            **{name: round(value, 4) for name, value in cost.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=5, help="at least 4 (the first two are left out)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "epoch_end_cost.csv")
    args = parser.parse_args(argv)
    if args.epochs < 4:
        parser.error(f"--epochs must be at least 4, got {args.epochs}")
    rows = []
    for seed in args.seeds:
        for preset in args.presets:
            rows.append(measure(preset, seed, args.epochs))
            row = rows[-1]
            print(f"{preset} seed {seed}: steps {row['steps_seconds_per_epoch']:.2f} s an epoch, end "
                  f"{row['epoch_end_seconds']:.2f} s ({100 * row['end_share']:.1f}% of an epoch)", flush=True)
    table = pd.DataFrame(rows).assign(**provenance.provenance("benchmarks/epoch_end_cost.py", argv))
    provenance.write_csv(args.out, table)
    print(table.drop(columns=["date", "commit", "cpu_count", "cpu_model", "command"]).to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
