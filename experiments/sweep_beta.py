"""A beta sweep of the classic Bernoulli VAE: beta in 0, 0.01, 0.1, 0.5, 1, 2, 4.

The experiment walkthrough 002 suggests ("what advantage does the VAE have
over a plain autoencoder ... could sweep over various values of beta"),
measured: final reconstruction and KL, importance-sampled log p(x), a
rate-distortion figure and a traversal grid per beta (sweep.csv, report.md).

    python -m experiments.sweep_beta          # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments import sweeps

BETAS = (0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0)
NOTES = (
    "Beta trades rate (KL) for distortion (reconstruction): a smaller beta buys a lower reconstruction with "
    "a higher KL. beta = 0 keeps a stochastic encoder but nothing pulls it towards the prior: its codes leave "
    "the prior's region, so its log p(x) and its traversals over [-3, 3] are poor even though it "
    "reconstructs best. beta = 1 gives the best negative ELBO and log p(x), as it must: it is the objective "
    "those numbers measure. Above 1, units switch off (see the active-unit count).",
)


def main(argv: Sequence[str] | None = None) -> Path:
    return sweeps.run_sweep("sweep_beta", "Beta sweep, Bernoulli VAE on binarized MNIST", "train.beta", "beta",
                            BETAS, argv, NOTES)


if __name__ == "__main__":
    main()
