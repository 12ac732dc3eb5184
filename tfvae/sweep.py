"""Sweeps: one row of numbers per trained run, for comparing settings (beta, latent size, ...).

    table = sweep_table({0.5: "runs/beta-0.5", 1.0: "runs/beta-1"}, setting="beta", k=100)
    table.to_csv("sweep.csv", index=False)
    tfvae.plots.rate_distortion_chart(table, "beta")

Each row holds the final test terms of the run's history (nats per image,
as trained, beta = 1 in the negative ELBO column whatever the run's beta:
reconstruction + KL) and an importance-sampled log p(x) from
`tfvae.evaluation.evaluate_run`. Training is not done here: every run must be
trained already.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from tfvae import evaluation, rundir

__all__ = ["SWEEP_COLUMNS", "summarize_run", "sweep_table"]

# Columns of `sweep_table`, after the setting's own column.
SWEEP_COLUMNS = (
    "run_dir",
    "test_distortion",
    "test_rate",
    "negative_elbo",
    "log_px",
    "log_px_standard_error",
    "k",
    "active_units",
    "seconds_per_epoch",
)


def summarize_run(run_dir: str | os.PathLike, *, k: int = 100, limit: int | None = None, seed: int = 0) -> dict:
    """The final test terms of a trained run and its log p(x) estimate, as one flat dict.

    Args:
      run_dir: a trained run directory.
      k: importance samples per test image for log p(x) (k = 100 is within a
        nat or two of k = 5000 for MNIST-sized models, at 1/50 of the time).
      limit: only the first `limit` test images for log p(x).
      seed: seed of the importance samples.

    Returns:
      A dict with the `SWEEP_COLUMNS` (nats per image): "test_distortion"
      and "test_rate" from the last evaluated epoch of history.csv,
      "negative_elbo" = their sum, "log_px" (negative of `evaluate`'s "nll")
      and its standard error over images, "k", "active_units",
      "seconds_per_epoch".
    """
    summary = rundir.run_summary(rundir.read_history(run_dir))
    results = evaluation.evaluate_run(run_dir, k=k, limit=limit, seed=seed, progress=False)
    return {
        "run_dir": str(run_dir),
        "test_distortion": summary["test_distortion"],
        "test_rate": summary["test_rate"],
        "negative_elbo": summary["test_distortion"] + summary["test_rate"],
        "log_px": -results["nll"],
        "log_px_standard_error": results["nll_standard_error"],
        "k": k,
        "active_units": results["active_units"],
        "seconds_per_epoch": summary["seconds_per_epoch"],
    }


def sweep_table(runs: Mapping[float, str | os.PathLike], setting: str, **kwargs) -> pd.DataFrame:
    """One row per run: the setting's value, then `SWEEP_COLUMNS`, in the order of `runs`.

    runs: setting value -> trained run directory. kwargs go to `summarize_run`.
    """
    rows = [{setting: value, **summarize_run(run_dir, **kwargs)} for value, run_dir in runs.items()]
    return pd.DataFrame(rows, columns=[setting, *SWEEP_COLUMNS])
