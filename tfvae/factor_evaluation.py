"""A run's representation against its dataset's ground-truth factors: the disentanglement metrics, and which
factor each latent dimension carries.

    results = evaluate_disentanglement("runs/dsprites-tcvae")     # what `tfvae evaluate RUN_DIR --disentanglement` writes
    results["metrics"]["mig"]                                     # {"mean", "sd", "values", "choices"}
    table = latent_factors(model, tfvae.factors.load_factor_dataset("dsprites_small"))

The representation is the encoder's posterior mean E[z|x] (`tfvae.model.central_code`), as in the papers'
evaluations (disentanglement_lib's "mean" representation). Every metric is `tfvae.disentanglement`'s, computed
once per evaluation seed; each reports its mean and sample sd over those seeds and the choices it was computed
with (`METRIC_CHOICES`). The sd is the metric's own sampling noise for one trained model, not the spread over
training seeds (the experiment `experiments/disentanglement.py` reports that one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfvae import checks, disentanglement, factors, objectives, rundir
from tfvae import model as model_lib
from tfvae.config import Experiment

REPRESENTATION = "posterior means E[z|x] of images drawn uniformly from the factor grid"
NUM_POINTS = 10_000  # images of the sample-based metrics (MIG, SAP, DCI, total correlation, active units)
SEEDS = (0, 1, 2)  # evaluation seeds: each draws its own sample and its own intervention batches


def metric_choices(num_points: int, batch_size: int, num_train: int, num_eval: int) -> dict[str, str]:
    """metric key of `disentanglement.evaluate_representation` -> the choices it is computed with, in words."""
    sample = f"{num_points:,} images drawn uniformly with the evaluation seed"
    intervention = (f"{num_train} training and {num_eval} evaluation points of {batch_size} images each "
                    "(disentanglement_lib: 10,000 and 5,000)")
    return {
        "mig": f"Chen et al. (2018): {sample}; each dimension cut into 20 equal-width bins; mutual information "
               "from counts; gap over the factor's entropy, mean over factors",
        "sap": f"Kumar et al. (2018), continuous: {sample}; R^2 of a line from one dimension to the factor index; "
               "gap of the two best dimensions, mean over factors",
        "disentanglement": f"DCI (Eastwood & Williams, 2018): {sample}, split 0.8 / 0.2 by the seed; lasso "
                           "(alpha 0.02) on standardized codes and factor indices; importance |weight|",
        "completeness": "DCI, as disentanglement: the entropy of each factor's importance over dimensions",
        "informativeness": "DCI, as disentanglement: held-out R^2 of the lasso, mean over factors",
        "total_correlation": f"{sample}; a Gaussian fitted to the posterior means, 0.5 (sum log var - log det "
                             "Cov), nats",
        "active_units": f"{sample}; dimensions whose posterior mean varies by more than 0.01 (Burda et al., 2016)",
        "beta_vae_score": f"Higgins et al. (2017): {intervention}; feature mean |z1 - z2| over pairs sharing the "
                          "fixed factor; softmax regression (L2 1e-3, 2000 steps), evaluation accuracy",
        "factor_vae_score": f"Kim & Mnih (2018): {intervention}; dimensions scaled by their std over 10,000 "
                            "images, those below 0.05 pruned; majority vote of the least-variance dimension, "
                            "evaluation accuracy",
    }


def factor_dataset(experiment: Experiment) -> factors.FactorDataset:
    """The factor dataset an experiment trained on; a one-line ValueError naming data.name if it has none."""
    name = experiment.data.name
    if not factors.is_factor_dataset(name):
        raise ValueError(f"data.name {name!r} has no ground-truth factors, so no disentanglement metric applies: "
                         f"train on one of {', '.join(factors.FACTOR_DATASETS)}")
    return factors.load_factor_dataset(name, experiment.data.data_dir)


def representation_fn(model, binarize: str = "none"):
    """images float32 [b, H, W, C] in [0, 1] -> posterior means [b, latent] (NumPy), as the model saw images in
    training: thresholded at 0.5 for binarize "threshold" (others as they are; the sprites are binary)."""
    if getattr(model, "conditional", False):
        raise ValueError("model.conditional=true needs class labels to encode, which a factor dataset has not")

    def encode(images: np.ndarray) -> np.ndarray:
        x = tf.constant(images, tf.float32)
        if binarize == "threshold":
            x = tf.cast(x >= 0.5, tf.float32)
        return model_lib.central_code(model.encode(x)).numpy()

    return encode


def evaluate_disentanglement(
    run_dir: str | os.PathLike,
    *,
    seeds: Sequence[int] = SEEDS,
    num_points: int = NUM_POINTS,
    batch_size: int = 64,
    num_train: int = 1000,
    num_eval: int = 500,
    model=None,
) -> dict:
    """Every metric of `disentanglement.evaluate_representation` for the latest checkpoint of a run directory.

    `model`: for a run trained on a model built in Python, that model built again (`rundir.restore_model`).

    Returns a JSON-ready dict: "run_dir", "name", "checkpoint", "dataset" (name, note, factor names and
    sizes), "representation", "seeds", "seconds" and "metrics": {metric: {"mean", "sd" (ddof 1 over the
    evaluation seeds), "values" (one per seed), "choices"}}.

    Raises:
      ValueError: one line naming data.name when the run's dataset has no factors.
    """
    for value, name in ((num_points, "num_points"), (batch_size, "batch_size"), (num_train, "num_train"),
                        (num_eval, "num_eval")):
        checks.positive_int(value, name)
    run_dir = Path(run_dir)
    experiment = rundir.load_experiment(run_dir)
    dataset = factor_dataset(experiment)
    model = rundir.restore_model(run_dir, dataset.image_shape, model)
    started = time.perf_counter()  # (not tf.timestamp: refused while op determinism is on)
    spread = disentanglement.metric_spread(
        disentanglement.evaluate_representation, representation_fn(model, experiment.data.binarize), dataset,
        seeds=tuple(seeds), num_points=num_points, batch_size=batch_size, num_train=num_train, num_eval=num_eval,
    )
    choices = metric_choices(num_points, batch_size, num_train, num_eval)
    checkpoint = tf.train.latest_checkpoint(run_dir / "checkpoints")
    return {
        "run_dir": str(run_dir),
        "name": experiment.name,
        "checkpoint": Path(checkpoint).name if checkpoint else None,
        "dataset": {"name": dataset.name, "note": dataset.note, "factor_names": list(dataset.factor_names),
                    "factor_sizes": list(dataset.factor_sizes)},
        "representation": REPRESENTATION,
        "seeds": list(seeds),
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": {key: {**values, "choices": choices[key]} for key, values in spread.items()},
    }


def latent_factors(model, dataset: factors.FactorDataset, *, num_points: int = NUM_POINTS, seed: int = 0,
                   binarize: str = "none") -> pd.DataFrame:
    """One row per latent dimension: what it carries, from `num_points` images drawn with `seed`.

    Columns: "dim"; "factor", the factor it is most informative about and "share", that factor's normalized
    mutual information with it (`disentanglement.informative_factors`: I / H(factor), 0 to 1); "kl", its mean
    analytic KL(q(z_d|x) || p(z_d)) over the images (nats; NaN for a posterior or prior that does not
    factorise); "variance", the variance of its posterior mean; "active", variance > 0.01 (Burda et al.).
    Rows in dimension order.
    """
    checks.positive_int(num_points, "num_points")
    factor_indices = dataset.sample_factors(num_points, np.random.default_rng(seed))
    encode = representation_fn(model, binarize)
    means, kls = [], []
    for start in range(0, num_points, 1000):
        images = dataset.images(factor_indices[start:start + 1000]).astype(np.float32) / 255.0
        means.append(encode(images))
        kls.append(_kl_per_dimension(model, images, binarize))
    codes = np.concatenate(means)
    named = disentanglement.informative_factors(codes, factor_indices)
    variance = codes.var(0)
    return pd.DataFrame({
        "dim": np.arange(codes.shape[1]),
        "factor": [dataset.factor_names[f] for f in named["factor"]],
        "share": named["share"],
        "kl": np.concatenate(kls).mean(0),
        "variance": variance,
        "active": variance > 0.01,
    })


def _kl_per_dimension(model, images: np.ndarray, binarize: str) -> np.ndarray:
    """KL(q(z_d|x) || p(z_d)) per image and dimension [b, latent] (analytic), or NaNs if q or p does not factorise."""
    x = tf.constant(images)
    if binarize == "threshold":
        x = tf.cast(x >= 0.5, tf.float32)
    posterior, prior = model.encode(x), model.prior
    if not (objectives.is_factorised(posterior) and objectives.is_factorised(prior)):
        return np.full((len(images), model.latent_size), np.nan)
    z = model_lib.draw_latents(posterior, seed=tf.constant([0, 0], tf.int32))
    return objectives.kl_per_dimension(posterior, prior, z).numpy()


def traversal_labels(table: pd.DataFrame) -> list[str]:
    """Row labels of a traversal from `latent_factors` rows, e.g. "z[3] x_position 0.62" ("inactive" added when
    the dimension's posterior mean does not vary)."""
    return [f"z[{row.dim}] {row.factor} {row.share:.2f}" + ("" if row.active else " inactive")
            for row in table.itertuples()]


__all__ = [
    "NUM_POINTS",
    "REPRESENTATION",
    "SEEDS",
    "evaluate_disentanglement",
    "factor_dataset",
    "latent_factors",
    "metric_choices",
    "representation_fn",
    "traversal_labels",
]
