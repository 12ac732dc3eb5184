"""A latent-size sweep of the classic Bernoulli VAE: latent size 2, 5, 10, 20, 50 (beta 1).

Walkthrough 002 asks "what size of latent space do we need for good
reconstructions / sane traversals?"; this measures it: final reconstruction
and KL, importance-sampled log p(x), a rate-distortion figure and a
traversal grid per size (sweep.csv, report.md).

    python -m experiments.sweep_latent        # about 11 minutes on 2 CPU cores
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments import sweeps, wording

SIZES = (2, 5, 10, 20, 50)


def conclusions(table: pd.DataFrame) -> list[str]:
    """The report's sentences, each made from the measured table (columns as `tfvae.sweep.sweep_table`'s)."""
    rows = table.sort_values("latent")
    sizes, reconstruction, kl = list(rows["latent"]), list(rows["test_distortion"]), list(rows["test_rate"])
    sentences = [
        f"As the latent grows from {sizes[0]:g} to {sizes[-1]:g} dimensions, the test reconstruction "
        f"{wording.trend(reconstruction)} ({reconstruction[0]:.1f} to {reconstruction[-1]:.1f} nats) and the KL "
        f"{wording.trend(kl)} ({kl[0]:.1f} to {kl[-1]:.1f}).",
    ]
    log_px, errors = list(rows["log_px"]), list(rows["log_px_standard_error"])
    steps = [f"{b - a:+.1f} from {s:g} to {t:g}" for s, t, a, b in zip(sizes, sizes[1:], log_px, log_px[1:])]
    sentences.append(f"log p(x) changes by {', '.join(steps)} nats.")
    if len(sizes) >= 2:
        (small, large), (a, b) = sizes[-2:], log_px[-2:]
        error = math.hypot(*errors[-2:])  # as if the two estimates were independent: an upper bound here
        sentences.append(wording.compare("The log p(x)", f"{large:g} dimensions", b, f"{small:g}", a, margin=2 * error)
                         + f" Two standard errors of the difference: {2 * error:.1f}.")
        elbo = list(rows["negative_elbo"])[-2:]
        sentences.append(wording.compare("The negative ELBO", f"{large:g} dimensions", elbo[1], f"{small:g}", elbo[0],
                                         margin=0.1))
    sentences.append("Active units: " + ", ".join(f"{int(units)} of {size:g}"
                                                  for size, units in zip(sizes, rows["active_units"])) + ".")
    return sentences


def main(argv: Sequence[str] | None = None) -> Path:
    return sweeps.run_sweep("sweep_latent", "Latent-size sweep, Bernoulli VAE on binarized MNIST",
                            "model.latent_size", "latent", SIZES, argv, conclusions)


if __name__ == "__main__":
    main()
