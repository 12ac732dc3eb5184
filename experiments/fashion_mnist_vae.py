"""A VAE on Fashion-MNIST with a 20-d latent and a sum-of-squares ("MSE + KL") loss.

Reproduces walkthrough 001: 784-400-20 ReLU encoder and decoder with a
sigmoid output, the summed squared error plus the Gaussian KL, batch 128,
Adam 1e-3, 10 epochs; reconstructions, and strips that decode one example's
posterior mean shifted along latent directions (the walkthrough adds the same
number to every latent coordinate, from -0.5 to 2.75).

    python -m experiments.fashion_mnist_vae   # about 4 minutes on 2 CPU cores

Needs Fashion-MNIST (`tfvae data fetch fashion_mnist`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import tfvae
from experiments import common, wording
from tfvae import data, plots

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
OFFSETS = np.arange(-0.5, 3.0, 0.25).astype(np.float32)  # the walkthrough's 14 shifts
# -log N(x; m, sqrt(1/2)) = (x - m)^2 + log(pi) / 2 per pixel: the constant per image.
SSE_OFFSET = 784 * 0.5 * math.log(math.pi)
# Published epoch-10 training averages, per image, with the labels the walkthrough printed.
PUBLISHED = {"printed as 'KL'": 467.9756, "printed as 'MSE'": 7.0138, "total": 474.9893}


def experiment(epochs: int, data_dir: str | None) -> tfvae.Experiment:
    return common.with_data_dir(
        tfvae.Experiment(
            name="fashion-mnist-20d",
            data=tfvae.DataConfig(name="fashion_mnist", binarize="none", batch_size=128),
            model=tfvae.ModelConfig(hidden_sizes=(400,), latent_size=20, likelihood="normal",
                                    normal_scale=math.sqrt(0.5)),
            train=tfvae.TrainConfig(epochs=epochs),
        ),
        data_dir,
    )


def offset_strips(run: plots.RunData, folder: Path) -> list[Path]:
    """Strips of shifted posterior means: along (1, ..., 1) as the walkthrough, and along a class direction."""
    images, labels = run.test
    rows = [int(np.flatnonzero(labels == c)[0]) for c in (0, 3, 7, 8) if np.any(labels == c)]
    latent = run.model.latent_size
    directions = {
        "ones": (np.ones(latent, np.float32), "E[z|x] + t * (1, ..., 1), the walkthrough's shift"),
        "top_kl": (np.eye(latent, dtype=np.float32)[run.by_kl[0]],
                   f"E[z|x] + t * e_{run.by_kl[0]}, the dimension with the highest KL"),
    }
    if np.any(labels == 1) and np.any(labels == 0):
        toward = run.means[labels == 1].mean(0) - run.means[labels == 0].mean(0)
        directions["tshirt_to_trouser"] = (toward, "E[z|x] + t * (mean code of trousers - mean code of T-shirts)")
    paths = []
    for name, (direction, title) in directions.items():
        path = folder / f"offset_{name}.png"
        plots.save_grid(
            plots.offset_grid(run.model, run.means[rows], direction, OFFSETS),
            path, title, xlabel="t", xticks=OFFSETS,
            yticks=[f"#{row} {CLASSES[labels[row]]}" for row in rows], width_inches=10.0,
        )
        paths.append(path)
    return paths


def clipping_floor(data_dir: str | None) -> float:
    """The walkthrough's smallest possible summed squared error per test image: targets 2x - 1 in [-1, 1]
    against sigmoid outputs in [0, 1] miss every negative target by at least its size."""
    images, _ = data.load_arrays("fashion_mnist", "test", data_dir)
    targets = 2 * images.astype(np.float64) / 255 - 1
    return float((np.minimum(targets, 0) ** 2).reshape(len(images), -1).sum(1).mean())


def published_sentences(squared_error: float, kl: float, floor: float) -> list[str]:
    """Training numbers of epoch 10 against the walkthrough's (its labels swapped back), and how much of its
    image loss the clipping floor explains."""
    image_loss, published_kl = PUBLISHED["printed as 'KL'"], PUBLISHED["printed as 'MSE'"]
    return [
        wording.compare("The summed squared error per training image", "tfvae", squared_error, "the walkthrough",
                        image_loss),
        wording.compare("The KL per training image", "tfvae", kl, "the walkthrough", published_kl),
        f"The clipping floor on the test images, {floor:.1f} per image, is {floor / image_loss:.0%} of the "
        f"walkthrough's image loss, {image_loss:.2f}.",
    ]


def main(argv: Sequence[str] | None = None) -> Path:
    args = common.parse_args("fashion_mnist_vae", __doc__.splitlines()[0], argv)
    out = args.out
    report = common.Report(out, "Fashion-MNIST VAE, 20-d latent, MSE + KL (walkthrough 001)")
    exp = experiment(1 if args.quick else 10, args.data_dir)
    run_dir = out / exp.name
    summary = common.train_arm(exp, run_dir, progress=not args.no_progress)
    plots.draw_run(run_dir, figures=["loss_curves", "reconstructions", "prior_samples", "latent_scatter",
                                     "kl_per_dimension"])
    run = plots.RunData(run_dir)
    strips = offset_strips(run, run_dir / "figures")
    history = run.history.dropna(subset=["test_loss"]).iloc[-1]
    sse_train = history["train_distortion"] - SSE_OFFSET
    table = pd.DataFrame([
        {"quantity (per image, epoch 10)": "summed squared error, train", "walkthrough": PUBLISHED["printed as 'KL'"],
         "tfvae": sse_train},
        {"quantity (per image, epoch 10)": "KL(q(z|x) || p(z)), train", "walkthrough": PUBLISHED["printed as 'MSE'"],
         "tfvae": history["train_rate"]},
        {"quantity (per image, epoch 10)": "total, train", "walkthrough": PUBLISHED["total"],
         "tfvae": sse_train + history["train_rate"]},
        {"quantity (per image, epoch 10)": "summed squared error, test", "walkthrough": float("nan"),
         "tfvae": summary["test_distortion"] - SSE_OFFSET},
        {"quantity (per image, epoch 10)": "KL, test", "walkthrough": float("nan"), "tfvae": summary["test_rate"]},
    ])
    report.text(
        f"784-400-20 encoder, 20-400-784 decoder with sigmoid outputs, ReLU, batch 128, Adam 1e-3, "
        f"{exp.train.epochs} epochs on Fashion-MNIST greys in [0, 1]. The loss is the summed squared error plus "
        "the Gaussian KL: a Normal likelihood with fixed scale sqrt(1/2), whose -log p(x|z) is the squared "
        f"error plus {SSE_OFFSET:.1f} nats per image (subtracted in the table). Train numbers are the average "
        f"over the last epoch, as the walkthrough printed them. {summary['seconds_per_epoch']:.1f} s per epoch here.",
    )
    report.heading("Numbers")
    report.table(table)
    floor = clipping_floor(args.data_dir)
    sentences = published_sentences(sse_train, history["train_rate"], floor)
    report.text(
        "The walkthrough's printed labels are swapped: the term it prints as 'KL loss' (467.98) is the image "
        "loss and the one it prints as 'MSE loss' (7.01) is the KL (its format arguments are in the opposite "
        "order to its labels). It scales the targets to [-1, 1] (Normalize(0.5, 0.5)) but decodes through a "
        "sigmoid into [0, 1]: every pixel below mid-grey is missed by at least its distance below 0, a floor "
        "on its image loss. Here targets and outputs are both in [0, 1], so the squared error can go to 0. "
        + " ".join(sentences),
    )
    common.write_results(args, {"epochs": exp.train.epochs, "numbers": table.to_dict("records"),
                                "clipping_floor": floor, "seconds_per_epoch": summary["seconds_per_epoch"],
                                "conclusions": sentences})
    report.heading("Reconstructions")
    report.figure(run_dir / "figures/reconstructions.png", "Test images and their reconstructions")
    report.heading("Shifting an example's code along latent directions")
    for path in strips:
        report.figure(path, path.stem.replace("_", " "))
    report.text(
        "The walkthrough decodes a fresh sample of N(mu + t, sigma) at each shift; here the shifted mean is "
        "decoded, so each strip is deterministic. The notebook `notebooks/latent_explorer.ipynb` has the "
        "walkthrough's slider.",
    )
    report.heading("Other figures")
    report.figure(run_dir / "figures/prior_samples.png", "Decoded draws from the prior")
    report.figure(run_dir / "figures/kl_per_dimension.png", "KL per latent dimension")
    report.write()
    return out / "report.md"


if __name__ == "__main__":
    main()
