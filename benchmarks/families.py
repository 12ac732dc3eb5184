"""Every model family after the same short budget: test -ELBO, importance-sampled -log p(x), cost per epoch.

    .venv/bin/python benchmarks/families.py                       # 10 epochs each, seed 1, ~15 minutes here
    .venv/bin/python benchmarks/families.py --epochs 3 --limit 500 --k 200 --seeds 1 2 3

Each family is its preset (`tfvae presets`: dynamically binarized MNIST,
784-200-200-50 tanh unless the family changes it; `tfvae.config`) trained
for --epochs through `tfvae.fit`, then scored on the first --limit images of
the fixed binarization of the test set (`tfvae.evaluation.fixed_test_set`)
with k importance samples. Writes benchmarks/results/families.csv: one row
per family and seed, with each family's seconds per epoch divided by the
plain VAE's of the same run (what a family costs) and the provenance
(tools/provenance.py: date, commit, CPU, command). Runs go to
RUN_ROOT/PRESET-sSEED and are continued if they exist.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import provenance  # tools/provenance.py

FAMILIES = ["mnist-burda-vae", "mnist-burda-iwae5", "mnist-burda-iwae5-dreg", "mnist-burda-mixture",
            "mnist-burda-vampprior", "mnist-burda-two-layer", "mnist-burda-iaf", "mnist-burda-coupling",
            "mnist-burda-tcvae", "mnist-burda-cvae"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--presets", nargs="+", default=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--limit", type=int, default=2000, help="test images scored")
    parser.add_argument("--run-root", type=Path, default=Path("runs/benchmarks/families"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "families.csv")
    args = parser.parse_args(argv)

    import pandas as pd

    import tfvae
    from tfvae import evaluation, rundir

    rows = []
    for seed in args.seeds:
        for name in args.presets:
            experiment = tfvae.override(tfvae.preset(name), {"train.epochs": args.epochs, "train.seed": seed})
            run_dir = args.run_root / f"{name}-s{seed}"
            started = time.perf_counter()
            result = tfvae.fit(experiment, run_dir, progress=False)
            summary = rundir.run_summary(result.history)
            numbers = evaluation.evaluate_run(run_dir, k=args.k, limit=args.limit, progress=False)
            rows.append({
                "preset": name, "seed": seed, "epochs": summary["epochs"],
                "training_minutes": round(summary["wall_time"] / 60, 2),
                "seconds_per_epoch": round(summary["seconds_per_epoch"], 3),
                "test_negative_elbo": round(numbers["negative_elbo"], 3),
                "nll": round(numbers["nll"], 3), "nll_standard_error": round(numbers["nll_standard_error"], 3),
                "k": args.k, "test_images": numbers["num_examples"], "active_units": numbers["active_units"],
            })
            print(f"{name} seed {seed}: -log p(x) {numbers['nll']:.2f} +- {numbers['nll_standard_error']:.2f}, "
                  f"-ELBO {numbers['negative_elbo']:.2f}, {summary['seconds_per_epoch']:.2f} s/epoch "
                  f"({time.perf_counter() - started:.0f} s in all)", flush=True)
    table = pd.DataFrame(rows)
    plain = table[table["preset"] == "mnist-burda-vae"].set_index("seed")["seconds_per_epoch"]
    table["cost_vs_vae"] = [round(row.seconds_per_epoch / plain.get(row.seed, float("nan")), 2)
                            for row in table.itertuples()]
    table = table.assign(**provenance.provenance("benchmarks/families.py", argv))
    provenance.write_csv(args.out, table)
    print(table.drop(columns=["date", "commit", "cpu_count", "cpu_model", "command"]).to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
