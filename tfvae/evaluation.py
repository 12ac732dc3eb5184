"""Evaluation: test negative ELBO, importance-sampled log p(x), KL per dimension, active units.

The number models are compared by is the marginal log-likelihood, estimated
by importance sampling with the encoder as the proposal (Rezende et al.,
2014; Burda et al., 2015, eq. 8 at large k):

    log p(x) ~ log (1/k) sum_{i=1..k} p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x).

Its expectation is the IWAE bound IWAE_k <= log p(x), which rises to log p(x)
as k grows; k = 5000 is the usual choice. The k draws are processed in chunks
whose log-sum-exp is accumulated (log-add-exp of a running value), so memory
stays bounded whatever k is, and each chunk runs the decoder once on all of
its draws (one large matrix product per layer).

`evaluate(model, data)` returns numbers (a JSON-ready dict);
`evaluate_run(run_dir)` does it for a run directory's model on its fixed test
set (`fixed_test_set`), which the CLI (`tfvae evaluate RUN_DIR`) writes to
RUN_DIR/eval.json.

Dynamically binarized data: the training pipeline draws a new binarization
of the test split on every pass, so a test number would change from pass to
pass. `fixed_test_set` instead binarizes the test images once, with NumPy's
`default_rng(TEST_BINARIZATION_SEED)` (pixel = uniform < intensity), the same
draw for every run and every evaluation, so runs are compared on the very same
binary images.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import stats
from tqdm.auto import tqdm

from tfvae import checks, factors, objectives, protocol, rundir
from tfvae import data as data_lib
from tfvae import model as model_lib
from tfvae.config import Experiment

__all__ = ["TEST_BINARIZATION_SEED", "ACTIVE_UNIT_THRESHOLD", "DEFAULT_CHUNK_ELEMENTS", "evaluate",
    "fixed_test_set", "describe_test_set", "evaluate_run", "posterior_means", "anomaly_scores", "roc_auc"]

# The one stochastic binarization of a dynamically binarized test set (see the module docstring).
TEST_BINARIZATION_SEED = 0
# Burda et al. (2015, sec. 5.2): a unit is active when Cov_x(E_q(z|x)[z_u]) > 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01
# Upper bound on draws x pixels held at once (decoder outputs of one chunk):
# 2^22 float32 values = 16 MiB, the size of a typical L3 cache, so the
# element-wise work of the log-density (softplus, products, sums) runs on
# cached data instead of streaming through memory once per op, while the
# matrix products stay large (for MNIST at batch 100: 53 draws per chunk,
# [5300, 400] x [400, 784]). Measurements: benchmarks/README.md.
DEFAULT_CHUNK_ELEMENTS = 2**22


def evaluate(
    model,
    data,
    *,
    k: int = 5000,
    chunk: int | None = None,
    seed: int = 0,
    progress: bool = False,
    per_example: bool = False,
    jit_compile: bool = False,
) -> dict:
    """Test negative ELBO, importance-sampled log p(x) and posterior statistics over one pass of `dataset`.

    Args:
      model: a `tfvae.VAE` (anything with `encode`, `decode`, `prior`), with
        a factorised posterior for the per-dimension numbers. A model that
        needs side data (`tfvae.protocol`; the class-conditional VAE) is scored
        on each image given its own: "nll" is then -log p(x|y), and `data`
        must yield labels.
      data: an `ArraySource` or a `tf.data.Dataset` of image batches [b, H, W, C] (or `(images, labels)`),
        or the images themselves as an array [N, H, W, C] (uint8 or floats in [0, 1]), in batches of 100.
      k: importance samples per image, >= 1.
      chunk: draws per image processed at once; by default as many as fit
        `DEFAULT_CHUNK_ELEMENTS` decoder outputs for the batch. The result
        does not depend on it beyond the draws of z.
      seed: the draws for batch i, chunk j use the stateless seed
        fold_in((seed, i), j): the same model and data give the same numbers.
      progress: show a progress bar (images done).
      per_example: also return "log_px", the estimate for each image (a list).
      jit_compile: compile each batch with XLA (on a 2-core CPU it was slower
        than the graph: benchmarks/README.md; try it on a GPU).

    Returns:
      A dict, nats per image unless noted: "num_examples", "k", "chunk";
      "nll" (-log p(x), mean over images) and "nll_standard_error" (of that
      mean, over images); "negative_elbo" = "distortion" + "rate" (the
      reconstruction averaged over the k draws, the KL analytic where TFP has
      it); "iwae_gap" = negative_elbo - nll >= 0; "bits_per_dim" = nll / (D
      log 2) with D values per image; "kl_per_dimension" and
      "posterior_mean_variance" (lists over latent dimensions; None for an
      unfactorised posterior), "active_units" (dimensions whose posterior
      mean varies over the data by more than 0.01), "seconds".

    Raises:
      ValueError: for k < 1 or chunk < 1.
    """
    protocol.check_model(model, "evaluate")
    checks.positive_int(k, "k")
    if chunk is not None:
        checks.positive_int(chunk, "chunk")
    if not isinstance(data, (tf.data.Dataset, data_lib.ArraySource)):
        data = data_lib.from_arrays(data, batch_size=100)
    dataset = data_lib.as_dataset(data)
    spec = dataset.element_spec[0] if isinstance(dataset.element_spec, tuple) else dataset.element_spec
    values_per_image = math.prod(spec.shape[1:])
    batch_size = spec.shape[0]
    if chunk is None:
        chunk = max(1, DEFAULT_CHUNK_ELEMENTS // (values_per_image * (batch_size or 128)))
    num_chunks = -(-k // chunk)
    chunk = -(-k // num_chunks)  # equal chunks: fewer wasted draws in the last one
    _check_images_fit(model, dataset)
    batch_statistics = _compile_batch_statistics(model, k, chunk, num_chunks, jit_compile)

    sums: dict[str, np.ndarray] = {}
    log_px = []
    started = time.perf_counter()
    total = _num_examples(data) if progress else None
    with tqdm(total=total, disable=not progress, unit="image", desc=f"log p(x), k={k}") as bar:
        for index, element in enumerate(dataset):
            stats = batch_statistics(element, tf.constant([seed, index], tf.int32))
            log_px.append(stats["log_px"].numpy())
            for name, value in stats.items():
                value = value.numpy().astype(np.float64)
                for suffix, term in (("", value), ("_squared", value**2)):
                    sums[name + suffix] = sums.get(name + suffix, 0.0) + term.sum(axis=0)
            bar.update(int(stats["count"].shape[0]))
            bar.set_postfix(nll=f"{-sums['log_px'] / sums['count']:.2f}")
    seconds = time.perf_counter() - started
    if not sums:
        raise ValueError("the dataset is empty: nothing to evaluate")
    results = _summarise(sums, k, chunk, values_per_image, seconds)
    if per_example:
        results["log_px"] = np.concatenate(log_px).astype(float).tolist()
    return results


def _num_examples(data) -> int | None:
    try:
        return data_lib.num_examples(data)
    except (ValueError, tf.errors.OpError):
        return None


def _check_images_fit(model, dataset: tf.data.Dataset) -> None:
    """Encodes the first batch eagerly, so that images of another shape than the model was built for fail here
    with the model's own one-line message rather than inside the compiled loop."""
    for element in dataset.take(1):
        scorer, images = protocol.scorer(model, element)
        scorer.encode(images)


def _compile_batch_statistics(model, k: int, chunk: int, num_chunks: int, jit_compile: bool):
    """A compiled function (batch, seed [2]) -> per-image statistics (dict of [b] or [b, latent]).

    The batch is images [b, H, W, C], or (images, side data) for a model that needs it (`tfvae.protocol.scorer`).
    """
    whole_model = model

    def batch_statistics(batch, seed):
        model, images = protocol.scorer(whole_model, batch)
        posterior, prior = model.encode(images), model.prior  # a learned prior runs its networks once a batch
        batch = tf.shape(images)[0]
        log_px = tf.fill([batch], -np.inf)
        log_likelihood_sum = tf.zeros([batch])
        for j in tf.range(num_chunks):
            draws = tf.cast(tf.random.experimental.stateless_fold_in(seed, j), tf.int32)
            samples = objectives.importance_samples(model, images, [chunk], draws, posterior=posterior, prior=prior)
            # The last chunk may run past k draws: those get weight 0 (log weight -inf).
            valid = (j * chunk + tf.range(chunk)) < k
            log_weights = tf.where(valid[:, None], samples.log_weights, -np.inf)  # [chunk, b]
            log_px = tf.reduce_logsumexp(tf.stack([log_px, tf.reduce_logsumexp(log_weights, axis=0)]), axis=0)
            log_likelihood_sum += tf.reduce_sum(tf.where(valid[:, None], samples.log_likelihood, 0.0), axis=0)
        stats = {
            "count": tf.ones([batch]),
            "log_px": log_px - math.log(k),
            "distortion": -log_likelihood_sum / k,
            "rate": objectives.kl_divergence(posterior, prior, model_lib.draw_latents(posterior, seed=seed)),
            "posterior_mean": model_lib.central_code(posterior),
        }
        if objectives.is_factorised(posterior) and objectives.is_factorised(prior):
            stats["kl_per_dimension"] = objectives.kl_per_dimension(
                posterior, prior, model_lib.draw_latents(posterior, seed=seed)
            )
        return stats

    return model_lib.compile_for_one_model(batch_statistics, jit_compile=jit_compile, reduce_retracing=True)


def _summarise(sums: dict, k: int, chunk: int, values_per_image: int, seconds: float) -> dict:
    n = float(sums["count"])
    mean = {name: sums[name] / n for name in sums if not name.endswith("_squared")}
    nll = -float(mean["log_px"])
    log_px_variance = max(float(sums["log_px_squared"] / n - mean["log_px"] ** 2), 0.0)
    posterior_mean_variance = np.maximum(sums["posterior_mean_squared"] / n - mean["posterior_mean"] ** 2, 0.0)
    negative_elbo = float(mean["distortion"] + mean["rate"])
    per_dimension = mean.get("kl_per_dimension")
    return {
        "num_examples": int(n),
        "k": k,
        "chunk": chunk,
        "nll": nll,
        "nll_standard_error": math.sqrt(log_px_variance / n),
        "negative_elbo": negative_elbo,
        "distortion": float(mean["distortion"]),
        "rate": float(mean["rate"]),
        "iwae_gap": negative_elbo - nll,
        "bits_per_dim": nll / (values_per_image * math.log(2)),
        "kl_per_dimension": None if per_dimension is None else [float(v) for v in per_dimension],
        "posterior_mean_variance": [float(v) for v in posterior_mean_variance],
        "active_units": int(np.sum(posterior_mean_variance > ACTIVE_UNIT_THRESHOLD)),
        "seconds": round(seconds, 3),
    }


def fixed_test_set(
    experiment: Experiment, batch_size: int = 100, limit: int | None = None, with_labels: bool = False
) -> data_lib.ArraySource:
    """The test split of `experiment`'s dataset as it is evaluated: fixed, ordered, batches of `batch_size`.

    "none" and "threshold" binarizations are deterministic already; "dynamic"
    is drawn once with `default_rng(TEST_BINARIZATION_SEED)` (see the module
    docstring). `limit` keeps the first `limit` images (after binarizing all).
    `with_labels`: batches of (images, labels).
    """
    images, labels = factors.load_arrays(experiment.data.name, experiment.data.split("test"),
                                         experiment.data.data_dir)
    binarize = experiment.data.binarize
    if binarize == "dynamic":
        images = data_lib.binarize_once(images, TEST_BINARIZATION_SEED)
        binarize = "none"
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return data_lib.from_arrays(images, labels if with_labels else None, batch_size=batch_size, binarize=binarize)


def describe_test_set(experiment: Experiment) -> str:
    """How `fixed_test_set` binarizes `experiment`'s test split (or validation images), in words (for eval.json)."""
    binarize, split = experiment.data.binarize, experiment.data.split("test")
    images = f"{experiment.data.name} " + ("test split" if split == "test" else f"validation images ({split})")
    if binarize == "dynamic":
        return f"{images}, binarized once: numpy default_rng({TEST_BINARIZATION_SEED}).random(shape) < pixel / 255"
    if binarize == "threshold":
        return f"{images}, pixel >= 0.5"
    return f"{images}, pixels / 255 in [0, 1]"


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    k: int = 5000,
    chunk: int | None = None,
    batch_size: int = 100,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    jit_compile: bool = False,
    model=None,
) -> dict:
    """`evaluate` for the latest checkpoint of a run directory on its fixed `fixed_test_set`.

    `model`: for a run trained on a model built in Python, that model built again (`rundir.restore_model`).

    Returns the numbers of `evaluate` plus "run_dir", "name", "checkpoint",
    "test_set" and "seed"; the caller saves them (the CLI writes RUN_DIR/eval.json).
    """
    run_dir = Path(run_dir)
    experiment = rundir.load_experiment(run_dir)
    # With labels, for a model that needs them; any other one ignores them (`tfvae.protocol.scorer`).
    dataset = fixed_test_set(experiment, batch_size=batch_size, limit=limit, with_labels=True)
    model = rundir.restore_model(run_dir, data_lib.image_shape(dataset), model)
    checkpoint = tf.train.latest_checkpoint(run_dir / "checkpoints")
    results = evaluate(model, dataset, k=k, chunk=chunk, seed=seed, progress=progress, jit_compile=jit_compile)
    header = {
        "run_dir": str(run_dir),
        "name": experiment.name,
        "checkpoint": Path(checkpoint).name if checkpoint else None,
        "test_set": describe_test_set(experiment),
        "seed": seed,
    }
    return {**header, **results}


# --------------------------------------------------------------------------- the terms over many images
def average_terms(model, batches, beta: float = 1.0, seed: int = 0,
                  batch_size: int | None = None) -> objectives.Terms:
    """Example-weighted means of `negative_elbo`'s terms over every image of `batches`, nats per image.

    `batches` is an `ArraySource` or a `tf.data.Dataset` of image batches [b,
    H, W, C] (or with side data, `(images, {"label": ...})`), or images [N, H,
    W, C] (or (images, side data {name: [N, ...]})) held in memory, taken in
    order in batches of `batch_size`. A model that needs side data is given
    each batch's (`tfvae.protocol.scorer`). The draw of z for batch i uses the stateless seed
    (seed, i), so the same model and batches give the same numbers either way.
    Each call compiles its loop afresh; to average one model's terms again and
    again (a test pass every few epochs), compile once with `terms_averager`.
    """
    return terms_averager(model)(batches, beta, seed, batch_size)


def terms_averager(model) -> Callable[..., objectives.Terms]:
    """`average_terms` for one model, its loop compiled once: (batches, beta=1.0, seed=0, batch_size=None) -> Terms.

    One compiled loop per model, not one shared by all models
    (`compile_for_one_model`): a process that builds many models (a sweep)
    traces each one's loop on its own, and a model whose variables are not
    built yet builds them on its first call (a shared loop may create
    variables on its first trace only). Over held images the loop reads no
    `tf.data` iterator (0.19 s instead of 0.27 s for the MNIST test set here).
    """
    compiled = model_lib.compile_for_one_model(lambda batches, beta, seed: _average_terms(model, batches, beta, seed))

    def average(batches, beta: float = 1.0, seed: int = 0,
                batch_size: int | None = None) -> objectives.Terms:
        beta, seed = tf.constant(beta, tf.float32), tf.constant(seed, tf.int32)
        if isinstance(batches, data_lib.ArraySource):
            batches = batches.as_dataset()
        if isinstance(batches, tf.data.Dataset):
            return compiled(batches, beta, seed)
        if batch_size is None:
            raise ValueError("average_terms over images held in memory needs batch_size")
        images, side = protocol.split_batch_side(batches)
        side = {name: tf.convert_to_tensor(values) for name, values in side.items()}
        return compiled(_HeldBatches(tf.convert_to_tensor(images, tf.float32), side, batch_size), beta, seed)

    average.compiled = compiled  # the tf.function, for its tracing count
    return average


class _HeldBatches(NamedTuple):
    images: tf.Tensor  # [N, H, W, C]
    side: dict  # side data {name: [N, ...]} (`tfvae.protocol`), or {}
    batch_size: int


def _average_terms(model, batches, beta, seed):
    """The sums of the terms over `batches` (a dataset or `_HeldBatches`) over their count; traced by `terms_averager`."""
    sums = tf.zeros([3])
    count = tf.constant(0.0)

    def add(sums, count, batch, batch_index):
        scorer_model, images = protocol.scorer(model, batch)
        terms = objectives.negative_elbo(scorer_model, images, beta, seed=tf.stack([seed, batch_index]))
        return sums + tf.stack([tf.reduce_sum(term) for term in terms]), count + tf.cast(tf.shape(images)[0], tf.float32)

    if isinstance(batches, _HeldBatches):
        size = batches.batch_size
        for batch_index in tf.range((tf.shape(batches.images)[0] + size - 1) // size):
            rows = slice(batch_index * size, (batch_index + 1) * size)
            batch = (batches.images[rows], {name: values[rows] for name, values in batches.side.items()})
            sums, count = add(sums, count, batch, batch_index)
    else:
        batch_index = tf.constant(0, tf.int32)
        for element in batches:
            sums, count = add(sums, count, element, batch_index)
            batch_index += 1
    return objectives.Terms(*tf.unstack(sums / count))


# --------------------------------------------------------------------------- per image, for figures
def posterior_means(model, images, batch_size: int = 1000, labels=None) -> np.ndarray:
    """E_q[z|x] (`model.central_code`) of images [n, H, W, C], encoded `batch_size` at a time: [n, latent].

    `labels` [n]: each image's label, for a model that encodes images with theirs (`tfvae.protocol`).
    """
    images = np.asarray(images, np.float32)
    chunks = []
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        batch = tf.constant(images[rows]) if labels is None else (tf.constant(images[rows]),
                                                                   {"label": tf.constant(labels[rows])})
        scorer, batch_images = protocol.scorer(model, batch)
        chunks.append(model_lib.central_code(scorer.encode(batch_images)).numpy())
    return np.concatenate(chunks)


def anomaly_scores(model, data, *, seed: int = 0) -> pd.DataFrame:
    """Per-example anomaly scores over one pass of `data` (`ArraySource` or dataset): a row per image.

    Columns, nats per image: "kl" = KL(q(z|x) || p(z)) (analytic where TFP
    has it), "reconstruction" = -log p(x|z) at one z ~ q(z|x), and
    "negative_elbo" = reconstruction + kl (beta = 1 whatever the run's beta:
    the bound on -log p(x)); plus "label" when the dataset yields (images,
    labels). Inputs unlike the training data score high on both. The draw of
    z for batch i uses the stateless seed (seed, i), so scores repeat exactly.
    """
    columns: dict[str, list[np.ndarray]] = {"kl": [], "reconstruction": [], "negative_elbo": [], "label": []}
    for index, element in enumerate(data):
        scorer, images = protocol.scorer(model, element)
        terms = objectives.negative_elbo(scorer, images, 1.0, seed=tf.constant([seed, index], tf.int32))
        columns["kl"].append(terms.rate.numpy())
        columns["reconstruction"].append(terms.distortion.numpy())
        columns["negative_elbo"].append(terms.loss.numpy())
        side = protocol.split_batch_side(element)[1]
        if "label" in side:
            columns["label"].append(np.asarray(side["label"]))
    return pd.DataFrame({
        name: np.concatenate(values).astype(np.int64 if name == "label" else np.float64)
        for name, values in columns.items()
        if values
    })


def roc_auc(normal_scores, anomalous_scores) -> float:
    """Area under the ROC curve of a score that should be higher for anomalies.

    The probability that a random anomalous example scores above a random
    normal one, ties counting one half (the Mann-Whitney U statistic over
    n_normal * n_anomalous pairs): 1 separates perfectly, 0.5 is chance.

    Args:
      normal_scores: scores of the in-distribution examples, [n_normal].
      anomalous_scores: scores of the anomalies, [n_anomalous].

    Raises:
      ValueError: an empty or non-finite set of scores.
    """
    normal = np.asarray(normal_scores, np.float64).ravel()
    anomalous = np.asarray(anomalous_scores, np.float64).ravel()
    if not len(normal) or not len(anomalous):
        raise ValueError("roc_auc needs at least one normal and one anomalous score")
    if not (np.all(np.isfinite(normal)) and np.all(np.isfinite(anomalous))):
        raise ValueError("roc_auc needs finite scores")
    ranks = stats.rankdata(np.concatenate([normal, anomalous]))  # ties get their average rank
    n, m = len(normal), len(anomalous)
    u = ranks[n:].sum() - m * (m + 1) / 2
    return float(u / (n * m))
