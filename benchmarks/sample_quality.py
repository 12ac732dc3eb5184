"""The classifier Frechet distance on real data: train vs test images against the default VAE's prior samples.

    python benchmarks/sample_quality.py                      # trains mnist-bernoulli-20d (10 epochs) first
    python benchmarks/sample_quality.py --run-dir RUN_DIR    # or uses (and finishes) that run

Issue 41's check of the metric: N MNIST train images against N test images must score below 5% of N prior
samples of the default VAE (`mnist-bernoulli-20d`, 10 epochs; mean images of p(x|z), z ~ N(0, I)) against the
same test images. Also reported: the unit test's cheap stand-in for prior samples (blurred class-mean images plus
noise), and precision and recall (k = 3) of each set against the test images. Writes
benchmarks/results/sample_quality.json. Time here: about 5 minutes of training (2 shared cores), then a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import provenance  # noqa: E402


def stand_in(test_images: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Each image its class's mean test image, blurred (sigma 1 pixel), plus N(0, 0.1^2) noise, clipped."""
    import scipy.ndimage

    pixels = test_images.astype(np.float64) / 255
    means = np.stack([pixels[labels == label].mean(axis=0) for label in range(10)])
    blurred = scipy.ndimage.gaussian_filter(means, sigma=(0, 1, 1, 0))
    noise = np.random.default_rng(seed).normal(0, 0.1, pixels.shape)
    return np.clip(blurred[labels] + noise, 0, 1).astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--n", type=int, default=10_000, help="images in each set (at most 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="which train images, prior draws and noise")
    args = parser.parse_args(argv)

    import tensorflow as tf

    import tfvae
    from tfvae import data, features
    from tfvae.sample_quality import classifier_frechet_distance, precision_recall

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="sample-quality-"))
    experiment = tfvae.preset("mnist-bernoulli-20d")
    model = tfvae.fit(experiment, run_dir, progress=False).model
    rng = np.random.default_rng(args.seed)
    test_images, test_labels = data.load_arrays("mnist", "test")
    train_images, _ = data.load_arrays("mnist", "train")
    test_images, test_labels = test_images[: args.n], test_labels[: args.n]
    sets = {
        "train_images": train_images[rng.choice(len(train_images), args.n, replace=False)],
        "prior_samples": np.concatenate([model.sample(1000, seed=tf.constant([args.seed, step])).numpy()
                                         for step in range(-(-args.n // 1000))])[: args.n],
        "stand_in": stand_in(test_images, test_labels, args.seed),
    }
    test_features = features.classifier_features(test_images, "mnist")
    scores = {}
    for name, images in sets.items():
        precision, recall = precision_recall(test_features, features.classifier_features(images, "mnist"), k=3)
        value = classifier_frechet_distance(images, test_images, dataset="mnist")
        scores[name] = {"classifier_frechet_distance": round(value, 4), "precision": precision, "recall": recall}
        print(f"{name:>14} vs test: distance {scores[name]['classifier_frechet_distance']:9.3f}, "
              f"precision {precision:.3f}, recall {recall:.3f}")
    distance = {name: score["classifier_frechet_distance"] for name, score in scores.items()}
    results = {
        "n": args.n,
        "seed": args.seed,
        "preset": experiment.name,
        "epochs": experiment.train.epochs,
        "final_test_loss": float(tfvae.read_history(run_dir)["test_loss"].dropna().iloc[-1]),
        "scores": scores,
        "train_vs_prior_ratio": round(distance["train_images"] / distance["prior_samples"], 5),
        "train_vs_stand_in_ratio": round(distance["train_images"] / distance["stand_in"], 5),
        "provenance": provenance.provenance("benchmarks/sample_quality.py", argv),
    }
    print(f"train-vs-test / prior-samples-vs-test = {results['train_vs_prior_ratio']:.4f} (target < 0.05)")
    out = ROOT / "benchmarks" / "results" / "sample_quality.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
