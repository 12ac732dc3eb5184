"""The classic Bernoulli VAE on threshold-binarized MNIST, 20-d and 2-d latents, and KL anomaly scores.

Reproduces walkthrough 003: 784-400-20 and 784-400-150-2 ReLU networks,
Bernoulli pixels, batch 128, Adam 1e-3, 10 epochs each; test negative ELBO
beside the published 87.65 and 140.24 nats; the 20 x 20 manifold over
standard Normal quantiles; GIFs of the manifold and of five reconstructions
as training goes; and KL(q(z|x) || p(z)) as an anomaly score, over the
training set against uniform noise (the walkthrough: 51.76 nats for one
noise image) and against Fashion-MNIST, with the ROC AUC of each score.

    python -m experiments.bernoulli_vae      # about 13 minutes on 2 CPU cores

Needs MNIST and Fashion-MNIST (`tfvae data fetch mnist`, `tfvae data fetch fashion_mnist`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import tfvae
from experiments import common, wording
from tfvae import data, evaluation, plots, sweep

PUBLISHED = {"mnist-bernoulli-20d": 87.65, "mnist-bernoulli-2d": 140.24}
REQUIRED = {"mnist-bernoulli-20d": 88.0, "mnist-bernoulli-2d": 142.0}
RECONSTRUCTION_INDICES = [1, 4, 12, 15, 22]  # the walkthrough's five hand-picked test images
PUBLISHED_NOISE_KL = 51.763
NOISE_IMAGES = 10_000


def progress_recorder(experiment: tfvae.Experiment) -> plots.ProgressRecorder:
    """Records the manifold and the walkthrough's five reconstructions every 100 steps (47 frames)."""
    test = data.load("mnist", "test", batch_size=32, binarize="threshold", data_dir=experiment.data.data_dir)
    images = next(iter(test)).numpy()
    return plots.ProgressRecorder(images[[i for i in RECONSTRUCTION_INDICES if i < len(images)]], every=100,
                                  grid_size=20 if experiment.model.latent_size == 2 else 12)


def score_sources(model, data_dir: str | None, seed: int) -> pd.DataFrame:
    """Per-image anomaly scores (`tfvae.evaluation.anomaly_scores`) with a `source` column."""
    rng = np.random.default_rng(seed)
    noise = rng.random((NOISE_IMAGES, 28, 28, 1), dtype=np.float32)
    sources = {
        "MNIST train": data.load("mnist", "train", batch_size=1000, binarize="threshold", data_dir=data_dir),
        "MNIST test": data.load("mnist", "test", batch_size=1000, binarize="threshold", data_dir=data_dir),
        "uniform noise": data.from_arrays(noise, batch_size=1000),
        "uniform noise, binarized": data.from_arrays(noise, batch_size=1000, binarize="threshold"),
        "Fashion-MNIST test": data.load("fashion_mnist", "test", batch_size=1000, binarize="threshold",
                                        data_dir=data_dir),
    }
    frames = [evaluation.anomaly_scores(model, dataset).assign(source=name) for name, dataset in sources.items()]
    return pd.concat(frames, ignore_index=True)


def anomaly_table(scores: pd.DataFrame, normal: str = "MNIST test") -> pd.DataFrame:
    """Per source: median KL and -ELBO, and the ROC AUC of each score against `normal`."""
    rows = []
    reference = scores[scores["source"] == normal]
    for source, group in scores.groupby("source", sort=False):
        row = {"source": source, "images": len(group), "median KL": group["kl"].median(),
               "median -ELBO": group["negative_elbo"].median()}
        if source not in (normal, "MNIST train"):
            row["AUC (KL)"] = evaluation.roc_auc(reference["kl"], group["kl"])
            row["AUC (-ELBO)"] = evaluation.roc_auc(reference["negative_elbo"], group["negative_elbo"])
        rows.append(row)
    return pd.DataFrame(rows)


def published_sentence(row: dict) -> str:
    """How a model's measured test -ELBO stands against the published one and the bound this repository sets."""
    measured, published, required = row["test -ELBO (nats)"], row["published"], REQUIRED[row["model"]]
    within = "within" if measured <= required else "over"
    return (wording.compare("The test negative ELBO", row["model"], measured, "the walkthrough", published, digits=2)
            + f" It is {within} the bound required here, <= {required:.1f}.")


def anomaly_sentences(name: str, table: pd.DataFrame, margin: float = 0.01) -> list[str]:
    """One sentence per source with AUCs: which score separates it from MNIST test better, and whether the KL's
    AUC is near chance (within 0.1 of 0.5) or below it."""
    sentences = []
    for _, row in table.dropna(subset=["AUC (KL)"]).iterrows():
        kl, elbo = row["AUC (KL)"], row["AUC (-ELBO)"]
        if abs(elbo - kl) <= margin:
            verdict = "the two scores separate it about equally"
        else:
            verdict = f"the {'negative ELBO' if elbo > kl else 'KL'} separates it better"
        if abs(kl - 0.5) < 0.1:
            chance = " (the KL's AUC is near chance, 0.5)"
        elif kl < 0.5:
            chance = " (the KL scores it lower than the digits: AUC below 0.5)"
        else:
            chance = ""
        sentences.append(f"{name}, {row['source']}: ROC AUC {kl:.3f} by KL and {elbo:.3f} by negative ELBO; "
                         f"{verdict}{chance}.")
    return sentences


def main(argv: Sequence[str] | None = None) -> Path:
    args = common.parse_args("bernoulli_vae", __doc__.splitlines()[0], argv)
    out = args.out
    report = common.Report(out, "Bernoulli VAE on binarized MNIST, 20-d and 2-d (walkthrough 003)")
    rows, anomalies = [], {}
    for name in ("mnist-bernoulli-20d", "mnist-bernoulli-2d"):
        experiment = common.with_data_dir(tfvae.preset(name), args.data_dir)
        if args.quick:
            experiment = tfvae.override(experiment, {"train.epochs": 1})
        run_dir = out / name
        recorder = progress_recorder(experiment)
        summary = common.train_arm(experiment, run_dir, progress=not args.no_progress, hooks=[recorder])
        recorder.save_gifs(run_dir / "figures")
        plots.draw_run(run_dir, figures=["loss_curves", "reconstructions", "latent_grid", "latent_scatter",
                                         "prior_samples", "kl_per_dimension"])
        numbers = sweep.summarize_run(run_dir, k=100)
        rows.append({
            "model": name,
            "test -ELBO (nats)": summary["test_loss"],
            "published": PUBLISHED[name],
            "required here": f"<= {REQUIRED[name]:.1f}",
            "reconstruction": summary["test_distortion"],
            "KL": summary["test_rate"],
            "log p(x), k=100": numbers["log_px"],
            "s / epoch": summary["seconds_per_epoch"],
        })
        model = plots.RunData(run_dir).model
        scores = score_sources(model, args.data_dir, experiment.train.seed)
        plots.anomaly_histograms(scores).save(run_dir / "figures/anomaly_sources.png", dpi=100, verbose=False)
        anomalies[name] = (scores, anomaly_table(scores), run_dir)
    sentences = write_report(report, rows, anomalies, out)
    common.write_results(args, {
        "epochs": 1 if args.quick else tfvae.preset("mnist-bernoulli-20d").train.epochs,
        "seed": tfvae.preset("mnist-bernoulli-20d").train.seed,
        "models": rows,
        "anomaly_auc": {name: table.to_dict("records") for name, (_, table, _) in anomalies.items()},
        "noise_kl": {name: {"first_image": float(scores.loc[scores["source"] == "uniform noise", "kl"].iloc[0]),
                            "median": float(scores.loc[scores["source"] == "uniform noise", "kl"].median())}
                     for name, (scores, _, _) in anomalies.items()},
        "published_noise_kl": PUBLISHED_NOISE_KL,
        "conclusions": sentences,
    })
    return report.write()


def write_report(report: common.Report, rows, anomalies, out: Path) -> list[str]:
    """Fills the report; returns its sentences made from the numbers."""
    report.text(
        "Threshold-binarized MNIST (pixel >= 0.5, the walkthrough's round()), Bernoulli likelihood, ReLU MLPs, "
        "batch 128, Adam 1e-3, 10 epochs, the presets `mnist-bernoulli-20d` (784-400-20) and "
        "`mnist-bernoulli-2d` (784-400-150-2). Numbers are per test image, nats; the test negative ELBO is the "
        "last epoch's pass over the test images with one z per image, as the walkthrough measured it. "
        "log p(x) is an importance-sampled estimate (k = 100, the encoder as proposal).",
    )
    report.heading("Test negative ELBO beside the published numbers")
    report.table(pd.DataFrame(rows))
    sentences = [published_sentence(row) for row in rows]
    report.text(" ".join(sentences))
    run20, run2 = out / "mnist-bernoulli-20d", out / "mnist-bernoulli-2d"
    report.heading("The 2-d manifold")
    report.figure(run2 / "figures/latent_grid.png", "20 x 20 grid of standard Normal quantiles 0.05..0.95, decoded")
    report.figure(run2 / "figures/latent_scatter.png", "Posterior means of the test images, by digit")
    report.heading("Training as it happens")
    report.figures_side_by_side(
        [run2 / "figures/progress_manifold.gif", run20 / "figures/progress_reconstructions.gif"],
        ["2-d manifold every 100 steps", "20-d: the five test images reconstructed every 100 steps"],
    )
    report.figure(run20 / "figures/reconstructions.png", "20-d: test images 1, 4, 12, 15, 22 and reconstructions")
    report.figure(run20 / "figures/loss_curves.png", "20-d loss curves")
    report.heading("Anomaly detection with KL(q(z|x) || p(z))")
    for name, (scores, table, run_dir) in anomalies.items():
        noise_kl = scores.loc[scores["source"] == "uniform noise", "kl"].to_numpy()
        train_rate = scores.loc[scores["source"] == "MNIST train", "kl"].to_numpy()
        report.text(
            f"**{name}.** KL over the {len(train_rate):,} training images: mean {train_rate.mean():.1f}, 99th percentile "
            f"{np.percentile(train_rate, 99):.1f}, max {train_rate.max():.1f} nats. The first uniform-noise image "
            f"(pixels uniform in [0, 1], not binarized, as the walkthrough drew it): {noise_kl[0]:.1f} nats; over "
            f"{len(noise_kl):,} such images the median is {np.median(noise_kl):.1f} (walkthrough: "
            f"{PUBLISHED_NOISE_KL} for its one image). ROC AUC against the MNIST test images (1 = perfect):",
        )
        report.table(table)
        sentences += anomaly_sentences(name, table)
        report.text(" ".join(anomaly_sentences(name, table)))
        report.figure(run_dir / "figures/anomaly_sources.png", f"{name}: anomaly scores per source")
    report.heading("What differs from the walkthrough")
    report.text(
        "- The walkthrough's numbers are one PyTorch run (seed 199); a run's final number varies by a few tenths "
        "of a nat with the seed. The presets use seed 2 (tfvae/config.py says how it was set); "
        "benchmarks/results/train_speed.json has the 20-d model's mean and spread over seeds 1, 2 and 3, for "
        "tfvae and a PyTorch reference alike.",
        "- The walkthrough records pictures every 10 batches; here every 100 steps (47 frames).",
        "- Its noise image's KL (51.76) depends on its model; the comparison that carries over is where noise "
        "falls against the training distribution, and the AUCs quantify it. Fashion-MNIST is an addition.",
    )
    return sentences


if __name__ == "__main__":
    main()
