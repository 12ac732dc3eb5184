"""Importance-sampled -log p(x) of the Burda et al. (2015) VAE and IWAE(k=5) on dynamically binarized MNIST.

    .venv/bin/python benchmarks/loglik.py --epochs 3                  # a short check, ~10 minutes here
    .venv/bin/python benchmarks/loglik.py --epochs 3 --limit 1000     # evaluate on 1000 test images only
    .venv/bin/python benchmarks/loglik.py --epochs 600 --presets mnist-burda-vae   # the 60-minute VAE target

Trains each preset (784-200-200-50, tanh; `tfvae.config`) for the same
number of epochs through `tfvae.fit`, then estimates -log p(x) with k = 5000
importance samples on the fixed binarization of the test set
(`tfvae.evaluation.fixed_test_set`), and prints epochs, training wall time,
evaluation time, -log p(x), the test negative ELBO and the IWAE - VAE
difference. Runs go to RUN_ROOT/PRESET and are continued if they exist, so
a longer budget extends a shorter one. Each evaluation is written to
RUN_ROOT/PRESET/eval.json.

What must hold: the VAE at or below 88.5 nats within 60 minutes of training,
and the IWAE(k=5) below the VAE at an equal number of epochs. Published
after 3280 passes: VAE 86.76, IWAE k=5 85.54, IWAE k=50 84.78.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PUBLISHED = {"mnist-burda-vae": 86.76, "mnist-burda-iwae5": 85.54, "mnist-burda-iwae50": 84.78}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, required=True, help="training epochs of every preset")
    parser.add_argument("--presets", nargs="+", default=["mnist-burda-vae", "mnist-burda-iwae5"])
    parser.add_argument("--k", type=int, default=5000, help="importance samples per test image")
    parser.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    parser.add_argument("--run-root", type=Path, default=Path("runs/benchmarks/loglik"))
    parser.add_argument("--seed", type=int, help="train.seed (default: the presets')")
    args = parser.parse_args(argv)

    import tfvae
    from tfvae import evaluation, rundir

    rows = []
    for name in args.presets:
        changes = {"train.epochs": args.epochs}
        if args.seed is not None:
            changes["train.seed"] = args.seed
        experiment = tfvae.override(tfvae.preset(name), changes)
        run_dir = args.run_root / name
        result = tfvae.fit(experiment, run_dir, progress=False)
        summary = rundir.run_summary(result.history)
        started = time.perf_counter()
        scores = evaluation.evaluate_run(run_dir, k=args.k, limit=args.limit, progress=sys.stderr.isatty())
        rundir.write_atomically(run_dir / "eval.json", json.dumps(scores, indent=2) + "\n")
        rows.append(dict(preset=name, epochs=summary["epochs"], train_seconds=summary["wall_time"],
                         seconds_per_epoch=summary["seconds_per_epoch"], eval_seconds=time.perf_counter() - started,
                         nll=scores["nll"], se=scores["nll_standard_error"], elbo=scores["negative_elbo"],
                         active=scores["active_units"], images=scores["num_examples"]))
        print(_format(rows[-1]), flush=True)
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            difference = row["nll"] - base["nll"]
            print(f"{row['preset']} - {base['preset']}: {difference:+.2f} nats at {row['epochs']:g} epochs")
    return 0


def _format(row: dict) -> str:
    published = PUBLISHED.get(row["preset"])
    anchor = f" (published after 3280 epochs: {published})" if published else ""
    return (f"{row['preset']:20s} epochs {row['epochs']:g}  train {row['train_seconds']:.0f} s "
            f"({row['seconds_per_epoch']:.1f} s/epoch)  eval {row['eval_seconds']:.0f} s on {row['images']} images  "
            f"-log p(x) {row['nll']:.2f} +- {row['se']:.2f}{anchor}  -ELBO {row['elbo']:.2f}  "
            f"active units {row['active']}")


if __name__ == "__main__":
    sys.exit(main())
