"""The Sonnet 2 / TFP beta-VAE Colab as published: MNIST, beta 0.01, [100, 100], latent 10, 1024 steps.

Reproduces walkthrough 002: batch 64, Adam 1e-3, 1024 steps, Bernoulli
pixels on grey MNIST, losses logged at powers of two and drawn on log-log
axes with plotnine, five reconstructions, and a 10 x 10 grid over latent
dimensions 0 and 1 in [-1, 1] (the others at 0).

    python -m experiments.sonnet_beta_vae     # about 3 minutes on 2 CPU cores

Its loss is per pixel and per latent dimension: the mean cross-entropy over
the 784 pixels plus beta times the mean KL over the 10 latent dimensions.
tfvae's terms are nats per image (sums), so the published objective is
tfvae's reconstruction / 784 + 0.01 * KL / 10 = (reconstruction + 0.784 KL)
/ 784: the same optimisation problem as tfvae with beta = 0.01 * 784 / 10 =
0.784, scaled by 1/784 (which Adam's normalisation undoes). That is the arm
"published"; the arm "beta-0.01-per-image" puts 0.01 on tfvae's summed KL,
a 78 times weaker pull towards the prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotnine as gg
import tensorflow as tf

import tfvae
from experiments import common, wording
from tfvae import data, plots

PIXELS, LATENT, PUBLISHED_BETA, STEPS = 784, 10, 0.01, 1024
EQUIVALENT_BETA = PUBLISHED_BETA * PIXELS / LATENT  # 0.784


def experiment(name: str, beta: float, data_dir: str | None) -> tfvae.Experiment:
    return common.with_data_dir(
        tfvae.Experiment(
            name=name,
            data=tfvae.DataConfig(binarize="none", batch_size=64),
            model=tfvae.ModelConfig(hidden_sizes=(100, 100), latent_size=LATENT),
            train=tfvae.TrainConfig(epochs=1, beta=beta, log_every=1),
        ),
        data_dir,
    )


def training_data(exp: tfvae.Experiment, steps: int) -> tf.data.Dataset:
    """`steps` shuffled batches of 64 (one 'epoch' of fit), repeating the training split as needed.

    A `tf.data` pipeline (fit trains it through an iterator), since one 'epoch'
    here is `steps` batches rather than one pass over the split.
    """
    tf.random.set_seed(exp.train.seed)  # see tfvae.fit: pipelines built after the global seed repeat exactly
    train = data.load("mnist", "train", batch_size=64, shuffle=True, seed=exp.train.seed, drop_remainder=True,
                      data_dir=exp.data.data_dir)
    return train.as_dataset(prefetch=False).repeat().take(steps)


def in_published_units(history: pd.DataFrame, beta: float = PUBLISHED_BETA) -> pd.DataFrame:
    """History terms in the walkthrough's units: reconstruction per pixel, KL per latent dimension,
    loss = reconstruction + beta * KL."""
    converted = history.copy()
    for split in ("train", "test"):
        converted[f"{split}_distortion"] = history[f"{split}_distortion"] / PIXELS
        converted[f"{split}_rate"] = history[f"{split}_rate"] / LATENT
        converted[f"{split}_loss"] = converted[f"{split}_distortion"] + beta * converted[f"{split}_rate"]
    return converted


def powers_of_two(history: pd.DataFrame) -> pd.DataFrame:
    steps = history["step"].to_numpy()
    return history[(steps & (steps - 1)) == 0].reset_index(drop=True)


def traversal(run: plots.RunData, path: Path) -> Path:
    values = np.linspace(-1, 1, 10).astype(np.float32)
    plots.save_grid(
        plots.latent_grid(run.model, values, values, (0, 1)), path,
        "Decoded means over z[0], z[1] in [-1, 1] (10 x 10), the other 8 dimensions at 0",
        xlabel="z[0]", ylabel="z[1]", xticks=values, yticks=values[::-1], width_inches=7.0,
    )
    return path


def arm_sentences(table: pd.DataFrame) -> list[str]:
    """The literal beta (arm "beta-0.01-per-image") against the published objective (arm "published"): one
    sentence each for the test KL, reconstruction and negative ELBO, nats per image."""
    arms = table.set_index("arm")
    literal, published = arms.loc["beta-0.01-per-image"], arms.loc["published"]
    return [
        wording.compare(f"The test {what}", f"tfvae beta = {PUBLISHED_BETA:g}", literal[column],
                        f"the published objective (tfvae beta = {EQUIVALENT_BETA:g})", published[column], margin=0.5)
        for what, column in (("KL", "test KL (nats / image)"), ("reconstruction", "test reconstruction (nats / image)"),
                             ("negative ELBO", "test -ELBO (nats / image)"))
    ]


def main(argv: Sequence[str] | None = None) -> Path:
    args = common.parse_args("sonnet_beta_vae", __doc__.splitlines()[0], argv)
    out, steps = args.out, 64 if args.quick else STEPS
    report = common.Report(out, "The Sonnet 2 beta-VAE Colab (walkthrough 002)")
    rows, runs = [], {}
    for name, beta in (("published", EQUIVALENT_BETA), ("beta-0.01-per-image", PUBLISHED_BETA)):
        exp = experiment(name, beta, args.data_dir)
        run_dir = out / name
        summary = common.train_arm(exp, run_dir, progress=not args.no_progress, train_data=training_data(exp, steps))
        plots.draw_run(run_dir, figures=["reconstructions", "latent_scatter", "kl_per_dimension"])
        run = runs[name] = plots.RunData(run_dir)
        traversal(run, run_dir / "figures/traversal_10x10.png")
        logged = powers_of_two(run.history)
        plot = plots.loss_curves(in_published_units(logged), PUBLISHED_BETA, log_scale=True) + gg.labs(
            y="per-pixel / per-dimension mean (nats)",
            title=f"Loss = reconstruction + 0.01 x KL in the walkthrough's units (tfvae beta = {beta:g}), "
                  "steps 1, 2, 4, ..., log-log axes",
        )
        plot.save(run_dir / "figures/loss_loglog_published_units.png", dpi=100, verbose=False)
        last = logged.iloc[-1]
        rows.append({
            "arm": name, "tfvae beta": beta,
            "step": int(last["step"]),
            "train loss (walkthrough units)": last["train_distortion"] / PIXELS
            + PUBLISHED_BETA * last["train_rate"] / LATENT,
            "train reconstruction / pixel": last["train_distortion"] / PIXELS,
            "train KL / dimension": last["train_rate"] / LATENT,
            "test reconstruction (nats / image)": summary["test_distortion"],
            "test KL (nats / image)": summary["test_rate"],
            "test -ELBO (nats / image)": summary["test_distortion"] + summary["test_rate"],
        })
    table = pd.DataFrame(rows)
    write_report(report, table, runs, steps)
    common.write_results(args, {"steps": steps, "arms": rows, "conclusions": arm_sentences(table)})
    return report.write()


def write_report(report: common.Report, table: pd.DataFrame, runs, steps: int) -> None:
    report.text(
        f"Grey MNIST in [0, 1] with Bernoulli pixels (the cross-entropy against grey targets, as published), "
        f"encoder 784-100-100-10 and decoder 10-100-100-784, batch 64, Adam 1e-3, {steps} steps; losses logged "
        "at steps 1, 2, 4, ..., 1024 (the loss of that step's batch, as the walkthrough prints it).",
        "**Units.** The walkthrough's reconstruction is the mean over pixels and its KL the mean over latent "
        "dimensions, both averaged over the batch; tfvae's are sums per image (nats per image). So "
        "walkthrough reconstruction = tfvae reconstruction / 784, walkthrough KL = tfvae KL / 10, and its loss "
        "reconstruction/784 + 0.01 KL/10 = (reconstruction + 0.784 KL) / 784. Its beta = 0.01 is therefore "
        f"beta = {EQUIVALENT_BETA:g} in tfvae's per-image terms: the 'published' arm. The second arm sets "
        "tfvae's beta to 0.01, a 78 times weaker KL weight, to show what the literal number would mean here.",
    )
    report.heading("Numbers")
    report.table(table, floatfmt=".4g")
    report.text(
        "The walkthrough prints its losses but they are not in the stored text, so there is no published "
        "number to put beside these; the figures are compared by eye. " + " ".join(arm_sentences(table)),
    )
    for name, run in runs.items():
        report.heading(f"Arm '{name}' (tfvae beta = {run.beta:g})")
        report.figure(run.dir / "figures/loss_loglog_published_units.png", "log-log loss plot, walkthrough units")
        report.figures_side_by_side(
            [run.dir / "figures/reconstructions.png", run.dir / "figures/traversal_10x10.png"],
            ["reconstructions (decoded posterior means)", "10 x 10 traversal of z[0], z[1] in [-1, 1]"],
        )
    report.heading("What differs from the walkthrough")
    report.text(
        "- The walkthrough sets the posterior scale to square(linear(h)), which can be 0 (an infinite KL and a "
        "NaN gradient); tfvae's is 1e-4 + exp(log-variance / 2), positive by construction.",
        "- It trains on tfds split ALL (train and test together); here the training split only, so the test "
        "numbers are on held-out images.",
        "- Its reconstructions decode one sample of q(z|x); here the posterior mean.",
        "- Sonnet 2.0.0b0 / TF 2.0 then, Sonnet 2.0.2 / TF 2.21 here; weights start as PyTorch's nn.Linear "
        "(tfvae's choice) instead of Sonnet's truncated Normal.",
    )


if __name__ == "__main__":
    main()
