"""Shared body of the beta and latent-size sweeps: train one arm per setting, tabulate, draw.

Each arm is the classic Bernoulli VAE (`mnist-bernoulli-20d`: 784-400-20,
threshold-binarized MNIST, batch 128, Adam 1e-3) with one field changed and
`EPOCHS` epochs. The table (`sweep.csv`) comes from `tfvae.sweep.sweep_table`,
the rate-distortion figure from `tfvae.plots.rate_distortion_chart`; the
sentences under it from the sweep's `conclusions(table)` (experiments.wording),
and the table and sentences also go to experiments/results/NAME.json.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import tfvae
from experiments import common
from tfvae import plots, sweep

EPOCHS = 5  # half the preset's 10: twelve arms in about 22 minutes on 2 busy CPU cores
K = 100  # importance samples per test image for log p(x)
LOG_PX_IMAGES = 2000  # the first 2,000 test images: standard errors of ~0.5 nat, a quarter of the time
TRAVERSAL_VALUES = np.linspace(-3, 3, 11).astype(np.float32)
TRAVERSAL_ROWS = 10  # the dimensions with the highest KL


def traversal_figure(run: plots.RunData, path: Path, caption: str) -> Path:
    """Rows: the highest-KL dimensions swept over [-3, 3], the others at the code of test image #1
    (for a 2-d latent, the whole plane over [-3, 3] instead)."""
    if run.model.latent_size == 2:
        plots.save_grid(plots.latent_grid(run.model, TRAVERSAL_VALUES, TRAVERSAL_VALUES), path,
                        f"{caption}: decoded means over z[0], z[1] in [-3, 3]", xlabel="z[0]", ylabel="z[1]",
                        xticks=TRAVERSAL_VALUES, yticks=TRAVERSAL_VALUES[::-1], width_inches=6.0)
        return path
    dims = run.by_kl[:TRAVERSAL_ROWS]
    plots.save_grid(
        plots.traversal_grid(run.model, run.means[1], dims, TRAVERSAL_VALUES), path,
        f"{caption}: each row sweeps one dimension, others at E[z|x] of test #1",
        xlabel="value", ylabel="dimension (highest KL first)", xticks=TRAVERSAL_VALUES,
        yticks=[f"z[{d}] KL {run.kl[d]:.2f}" for d in dims], width_inches=6.0,
    )
    return path


def run_sweep(name: str, title: str, field: str, setting: str, values: Sequence[float], argv,
              conclusions: Callable[[pd.DataFrame], list[str]]):
    """Trains the arm `field = value` for each value, then writes sweep.csv, the figures, report.md (with the
    sentences `conclusions(table)` makes from the measured table) and the results file."""
    args = common.parse_args(name, title, argv)
    out = args.out
    report = common.Report(out, title)
    base = common.with_data_dir(tfvae.preset("mnist-bernoulli-20d"), args.data_dir)
    runs = {}
    for value in values:
        arm = tfvae.override(base, {"name": f"{setting}-{value:g}", field: value,
                                    "train.epochs": 1 if args.quick else EPOCHS})
        runs[value] = out / arm.name
        common.train_arm(arm, runs[value], progress=not args.no_progress)
    table = sweep.sweep_table(runs, setting, k=K, limit=LOG_PX_IMAGES)
    table.to_csv(out / "sweep.csv", index=False)
    chart = out / "rate_distortion.png"
    plots.rate_distortion_chart(table, setting).save(chart, dpi=100, verbose=False)
    traversals = [traversal_figure(plots.RunData(run_dir), run_dir / "traversal.png", f"{setting} = {value:g}")
                  for value, run_dir in runs.items()]
    report.text(
        f"The classic Bernoulli VAE (preset `mnist-bernoulli-20d`: 784-400-20 ReLU, threshold-binarized MNIST, "
        f"batch 128, Adam 1e-3) with `{field}` set to each of {', '.join(f'{v:g}' for v in values)}, "
        f"{1 if args.quick else EPOCHS} epochs each. Test terms are the last epoch's pass over the 10,000 test "
        f"images (nats per image); log p(x) is importance-sampled with k = {K} on the first {LOG_PX_IMAGES:,} "
        "test images. The table is also in `sweep.csv`.",
    )
    report.heading("Numbers")
    shown = table.drop(columns=["run_dir", "k"]).rename(columns={"test_distortion": "reconstruction",
                                                                 "test_rate": "KL", "negative_elbo": "-ELBO"})
    report.table(shown)
    sentences = conclusions(table)
    report.text(" ".join(sentences))
    common.write_results(args, {"setting": setting, "field": field, "epochs": 1 if args.quick else EPOCHS, "k": K,
                                "log_px_images": LOG_PX_IMAGES,
                                "rows": table.drop(columns=["run_dir"]).to_dict("records"), "conclusions": sentences})
    report.heading("Rate and distortion")
    report.figure(chart, "KL against reconstruction, one point per setting")
    report.heading("Traversals")
    for path, value in zip(traversals, values):
        report.figure(path, f"{setting} = {value:g}")
    return report.write()
