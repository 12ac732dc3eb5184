"""A beta sweep of the classic Bernoulli VAE: beta in 0, 0.01, 0.1, 0.5, 1, 2, 4.

The experiment walkthrough 002 suggests ("what advantage does the VAE have
over a plain autoencoder ... could sweep over various values of beta"),
measured: final reconstruction and KL, importance-sampled log p(x), a
rate-distortion figure and a traversal grid per beta (sweep.csv, report.md).

    python -m experiments.sweep_beta          # about 11 minutes on 2 CPU cores
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments import sweeps, wording

BETAS = (0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0)


def conclusions(table: pd.DataFrame) -> list[str]:
    """The report's sentences, each made from the measured table (columns as `tfvae.sweep.sweep_table`'s)."""
    rows = table.sort_values("beta", ascending=False)
    betas, reconstruction, kl = list(rows["beta"]), list(rows["test_distortion"]), list(rows["test_rate"])
    sentences = [
        f"As beta goes down from {betas[0]:g} to {betas[-1]:g}, the test reconstruction "
        f"{wording.trend(reconstruction)} "
        f"({reconstruction[0]:.1f} to {reconstruction[-1]:.1f} nats) and the KL {wording.trend(kl)} "
        f"({kl[0]:.1f} to {kl[-1]:.1f}).",
    ]
    by_beta = rows.set_index("beta")
    if {0.0, 0.01} <= set(betas):
        zero, small = by_beta.loc[0.0], by_beta.loc[0.01]
        sentences.append(wording.compare("The reconstruction", "beta = 0", zero["test_distortion"], "beta = 0.01",
                                         small["test_distortion"], margin=0.5))
        sentences.append(f"The KL of beta = 0, {zero['test_rate']:.1f}, is {zero['test_rate'] / small['test_rate']:.1f} "
                         f"times that of beta = 0.01, {small['test_rate']:.1f}.")
    lowest_elbo = wording.best(betas, list(rows["negative_elbo"]))
    highest, lowest = (wording.best(betas, list(rows["log_px"]), lowest=flag) for flag in (False, True))
    error = by_beta.loc[highest[0], "log_px_standard_error"]
    sentences.append(f"The lowest negative ELBO, {lowest_elbo[1]:.1f}, is at beta = {lowest_elbo[0]:g}; the highest "
                     f"log p(x), {highest[1]:.1f} (standard error {error:.1f}), at beta = {highest[0]:g}, and the "
                     f"lowest, {lowest[1]:.1f}, at beta = {lowest[0]:g}.")
    sentences.append("Active units: " + ", ".join(f"{int(units)} at beta = {beta:g}"
                                                  for beta, units in zip(betas, rows["active_units"])) + ".")
    return sentences


def main(argv: Sequence[str] | None = None) -> Path:
    return sweeps.run_sweep("sweep_beta", "Beta sweep, Bernoulli VAE on binarized MNIST", "train.beta", "beta",
                            BETAS, argv, conclusions)


if __name__ == "__main__":
    main()
