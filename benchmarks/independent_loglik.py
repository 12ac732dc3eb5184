"""An importance-sampled -log p(x) from an exported SavedModel alone: no tfvae, Sonnet or TFP code.

    .venv/bin/python benchmarks/independent_loglik.py EXPORT_DIR --k 5000                 # MNIST's fixed test set
    .venv/bin/python benchmarks/independent_loglik.py EXPORT_DIR --images images.npy --k 100

A check of tfvae's own estimator (`tfvae.evaluate`, `tfvae evaluate`) written from the definitions, over the
export's signatures only: `posterior_sample(images, k, seed)` gives k draws z ~ q(z|x) and log q(z|x),
`prior_log_prob(z)` gives log p(z), and `decode(z)` the Bernoulli logits of p(x|z), from which

    log p(x|z) = sum over pixels of  x * logits - softplus(logits)
    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k

The estimate for each image is a mean of k importance weights in log space; this prints the mean over images of
-log p(x) and its standard error over images (nats per image). Two estimates of the same model with other draws
agree within a few standard errors (plus the small bias of finite k, the same sign for both). Bernoulli
likelihoods only (the export gives their logits).

By default the images are MNIST's test set binarized once as tfvae's log-likelihood protocol binarizes it
(numpy default_rng(123).random(shape) < pixel / 255, over the 10,000 test images in TFDS's order), read from the
offline copy `tfvae data fetch mnist` prepares; give --images for any other set (float32 or uint8 [N, H, W, C],
values 0 or 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

TEST_BINARIZATION_SEED = 123  # tfvae.evaluation's, written here again so that nothing of tfvae is imported


def log_px(export, images: np.ndarray, k: int, seed: int, chunk: int = 500) -> np.ndarray:
    """log p(x) estimates, one per image [N], nats, from `k` importance samples in chunks of `chunk` draws."""
    estimates = []
    for index, image in enumerate(images):
        x = tf.constant(image[None], tf.float32)  # [1, H, W, C]
        weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            drawn = export.posterior_sample(x, tf.constant(n), tf.constant([seed, index * 1000 + start // chunk]))
            z = tf.reshape(drawn["z"], [n, -1])  # [n, latent]
            logits = export.decode(z)["logits"]  # [n, H, W, C]
            log_likelihood = tf.reduce_sum(x * logits - tf.math.softplus(logits), axis=[1, 2, 3])
            weights.append(log_likelihood + export.prior_log_prob(z)["log_p"] - tf.reshape(drawn["log_q"], [n]))
        weights = tf.concat(weights, axis=0)
        estimates.append(float(tf.reduce_logsumexp(weights)) - math.log(k))
    return np.asarray(estimates)


def fixed_mnist_test(limit: int | None) -> np.ndarray:
    """MNIST's test images binarized once by tfvae's protocol, from the offline copy (via TFDS, no tfvae)."""
    import tensorflow_datasets as tfds

    data_dir = Path.home() / "tensorflow_datasets" / "mnist_offline"
    images = tfds.as_numpy(tfds.load("mnist", split="test", batch_size=-1, data_dir=str(data_dir)))["image"]
    binary = (np.random.default_rng(TEST_BINARIZATION_SEED).random(images.shape) < images / 255.0)
    return binary.astype(np.float32)[:limit]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--images", type=Path, help=".npy of images [N, H, W, C] in {0, 1} (default: MNIST test)")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--limit", type=int, help="the first LIMIT images only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    export = tf.saved_model.load(str(args.export_dir))
    images = np.load(args.images)[: args.limit].astype(np.float32) if args.images else fixed_mnist_test(args.limit)
    estimates = log_px(export, images, args.k, args.seed)
    result = {"nll": float(-estimates.mean()),
              "nll_standard_error": float(estimates.std(ddof=1) / math.sqrt(len(estimates))) if len(estimates) > 1
              else float("nan"),
              "k": args.k, "num_examples": len(estimates), "seed": args.seed, "export_dir": str(args.export_dir)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
