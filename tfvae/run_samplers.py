"""A run's samplers: fitted to its training set's codes, kept in RUN_DIR/samplers, drawn, and scored.

    sampler = fitted_sampler("runs/mnist-bernoulli-20d", "gmm")      # fits once, then reads RUN_DIR/samplers/gmm
    images = sample_images(model, sampler, 64, seed=0, temperature=1.0)   # [64, H, W, C] in [0, 1]
    scores = score_samplers("runs/mnist-bernoulli-20d", n=10_000)    # what `tfvae evaluate --samples N` writes

The codes are the posterior means (`evaluation.posterior_means`) of the run's whole training split as it was
trained: a dynamically binarized dataset binarized once, with NumPy's `default_rng(TRAINING_CODES_SEED)`, as the
fixed test set is. Any model of the protocol (`tfvae.protocol`) works; the samplers are `tfvae.samplers`.

`score_samplers` draws N images from each sampler at each evaluation seed and compares them with N test images
(the whole test split when N is its size; else N drawn without replacement with `default_rng(seed)`), in the
features of the dataset's committed classifier (`tfvae.features`): the classifier Frechet distance, and
precision and recall at k = 3 (`tfvae.sample_quality`). It reports each number's mean and standard deviation
(ddof 1) over the seeds, and the values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfvae import checks, evaluation, features, protocol, rundir, samplers
from tfvae import data as data_lib
from tfvae.sample_quality import feature_statistics, frechet_distance, precision_recall

__all__ = [
    "DEFAULT_SEEDS",
    "TRAINING_CODES_SEED",
    "check_sample_request",
    "fitted_sampler",
    "sample_images",
    "score_samplers",
    "training_codes",
    "training_images",
]

TRAINING_CODES_SEED = evaluation.TEST_BINARIZATION_SEED  # the one binarization of a dynamically binarized train split
DEFAULT_SEEDS = (0, 1, 2)
PRECISION_RECALL_K = 3  # Kynkaanniemi et al. (2019)'s k


def training_images(experiment, limit: int | None = None) -> np.ndarray:
    """The run's training split as trained: uint8 [N, H, W, C], or float32 0/1 when binarized (see module doc).

    Raises:
      ValueError: the images are not available here (one line: which dataset and split, and how to get them).
    """
    data = experiment.data
    split = data.split("train")
    try:
        images, _ = data_lib.load_arrays(data.name, split, data.data_dir)
    except (data_lib.DataNotFoundError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"a fitted sampler needs the run's training images ({data.name}, split {split!r}), not "
                         f"available here ({first[:200]}): run `tfvae data fetch {data.name}`, or pass them: "
                         "fitted_sampler(run_dir, kind, images=...)") from error
    images = images[:limit] if limit is not None else images
    if data.binarize == "dynamic":
        return data_lib.binarize_once(images, TRAINING_CODES_SEED)
    if data.binarize == "threshold":
        return (images >= 128).astype(np.float32)  # pixel / 255 >= 0.5
    return images


def training_codes(model, images, batch_size: int = 1000) -> np.ndarray:
    """Posterior means E_q[z|x] of images [N, H, W, C]: float32 [N, latent] (what a sampler is fitted to)."""
    return evaluation.posterior_means(model, images, batch_size=batch_size)


def _check_unconditional(model, run_dir) -> None:
    needed = protocol.side_data_needed(model)
    if needed:
        raise ValueError(f"{run_dir} has a model that needs the {', '.join(needed)} of each image: a fitted sampler "
                         "draws codes for a model that needs none; fix its side data in Python first "
                         "(tfvae.protocol.with_side_data)")


def fitted_sampler(run_dir: str | os.PathLike, kind: str, *, model=None, images=None, refit: bool = False,
                   options: dict | None = None):
    """The run's sampler of `kind`: "prior" (`samplers.PriorSampler` of the model's p(z)) or a fitted one.

    A fitted sampler is read from RUN_DIR/samplers/KIND when it is there (and `refit` is False); otherwise it is
    built (`samplers.build(kind, latent_size, **options)`), fitted to `training_codes` of the run's training
    images (or `images`, uint8 or floats [N, H, W, C], for a run trained on images of your own) and saved there.
    A saved sampler is read as it was fitted, whatever `options` say: `refit=True` fits it anew with them.

    Args:
      model: the run's model, restored (default: `rundir.restore_model(run_dir)`; needed for a model built in
        Python).

    Raises:
      ValueError: an unknown kind, a conditional model, missing training images (one line each).
    """
    if kind not in samplers.KINDS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of {', '.join(samplers.KINDS)}")
    model = rundir.restore_model(run_dir) if model is None else model
    _check_unconditional(model, run_dir)
    if kind == "prior":
        return samplers.PriorSampler(model.prior)
    path = samplers.run_path(run_dir, kind)
    if path.exists() and not refit:
        sampler = samplers.load(path)
        if sampler.latent_size != model.latent_size:
            raise ValueError(f"the {kind} sampler in {path} draws codes of size {sampler.latent_size}, the model's "
                             f"are {model.latent_size}: fit it again (refit=True, or `tfvae sample --refit`)")
        return sampler
    if images is None:
        images = training_images(rundir.load_experiment(run_dir))
    sampler = samplers.build(kind, model.latent_size, **(options or {}))
    sampler.fit(training_codes(model, images))
    samplers.save(sampler, path)
    return sampler


def sample_images(model, sampler, n: int, *, seed: int = 0, temperature: float = 1.0,
                  batch_size: int = 1000) -> np.ndarray:
    """n mean images of p(x|z), z ~ `sampler` at `temperature`: float32 [n, H, W, C] in [0, 1].

    Drawn `batch_size` at a time, batch i with the stateless seed (seed, i): the same arguments give the same
    images.
    """
    n = checks.positive_int(n, "n")
    tempered = samplers.with_temperature(sampler, temperature)
    batches = [protocol.sample(model, min(batch_size, n - first), seed=tf.constant([seed, index], tf.int32),
                               sampler=tempered).numpy()
               for index, first in enumerate(range(0, n, batch_size))]
    return np.concatenate(batches)


def _spread(values: Sequence[float]) -> dict:
    """{"mean", "sd" (ddof 1; 0 for one value), "values"} of numbers from several evaluation seeds."""
    array = np.asarray(values, np.float64)
    sd = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "sd": sd, "values": [float(value) for value in array]}


def _test_images(experiment) -> np.ndarray:
    data = experiment.data
    try:
        return data_lib.load_arrays(data.name, data.split("test"), data.data_dir)[0]
    except (data_lib.DataNotFoundError, OSError) as error:
        raise ValueError(f"sample scores compare samples with the run's test images ({data.name}), not available "
                         f"here: run `tfvae data fetch {data.name}`") from error


def _checked_sample_count(n, classifier: features.FeatureClassifier, available: int) -> int:
    """N, or one ValueError line: N must exceed the features' dimension and not the test images' count."""
    if not checks.is_positive_int(n) or n <= classifier.feature_size:
        raise ValueError(f"--samples N must be at least {classifier.feature_size + 1} (more images than the "
                         f"{classifier.feature_size} classifier features, for a non-singular covariance; 10000 to "
                         f"report a number), got {n}")
    if n > available:
        raise ValueError(f"--samples N must be at most {available}, the number of test images they are compared "
                         f"with, got {n}")
    return int(n)


def _classifier(dataset: str) -> features.FeatureClassifier:
    try:
        return features.load_classifier(dataset)
    except ValueError as error:
        raise ValueError(f"sample scores need a feature classifier for the run's dataset: {error}") from None


def check_sample_request(run_dir: str | os.PathLike, n, temperature: float = 1.0) -> None:
    """The checks of `score_samplers`' inputs, without a model: one ValueError line for a dataset without a
    committed classifier, N out of range, or a temperature <= 0."""
    samplers.check_temperature(temperature)
    experiment = rundir.load_experiment(run_dir)
    _checked_sample_count(n, _classifier(experiment.data.name), len(_test_images(experiment)))


def score_samplers(run_dir: str | os.PathLike, n: int, *, kinds: Sequence[str] = samplers.KINDS,
                   seeds: Sequence[int] = DEFAULT_SEEDS, temperature: float = 1.0, model=None, images=None,
                   progress=None) -> dict:
    """The classifier Frechet distance, precision and recall of N samples per sampler against N test images.

    Args:
      run_dir: a trained run; its dataset needs a committed classifier (`features.known_datasets()`).
      n: images per set: more than the classifier's feature size (129 for 128 features), at most the test
        split's size.
      kinds: which samplers (fitted and saved first when the run has none: `fitted_sampler`).
      seeds: evaluation seeds: the draws of each sampler and the test images compared (module docstring).
      temperature: every sampler's, > 0.
      model, images: as `fitted_sampler`.
      progress: called with one line per sampler when given (e.g. `print`).

    Returns:
      {"n", "seeds", "temperature", "test_set", "classifier", "samplers": {kind: {"classifier_frechet_distance",
      "precision", "recall": {"mean", "sd", "values"}, "fit": the sampler's fit record, "seconds"}}}; distances in
      squared feature units (`sample_quality.classifier_frechet_distance`), precision and recall fractions.

    Raises:
      ValueError: one line each: no classifier for the dataset, N out of range, temperature <= 0, an unknown
        sampler, missing images.
    """
    samplers.check_temperature(temperature)
    for kind in kinds:
        if kind not in samplers.KINDS:
            raise ValueError(f"unknown sampler {kind!r}; choose from {', '.join(samplers.KINDS)}")
    experiment = rundir.load_experiment(run_dir)
    classifier = _classifier(experiment.data.name)
    test_images = _test_images(experiment)
    n = _checked_sample_count(n, classifier, len(test_images))
    model = rundir.restore_model(run_dir) if model is None else model
    real = {seed: _real_features(test_images, n, seed, classifier) for seed in seeds}
    results = {}
    for kind in kinds:
        started = time.perf_counter()
        sampler = fitted_sampler(run_dir, kind, model=model, images=images)
        scores = [_scores(real[seed], sample_images(model, sampler, n, seed=seed, temperature=temperature),
                          classifier) for seed in seeds]
        results[kind] = {name: _spread([score[name] for score in scores]) for name in scores[0]}
        results[kind].update(fit=sampler.fit_record, seconds=round(time.perf_counter() - started, 3))
        if progress is not None:
            progress(_summary_line(kind, results[kind]))
    return {"n": n, "seeds": list(seeds), "temperature": temperature,
            "test_set": f"{experiment.data.name} {experiment.data.split('test')} split, pixels / 255"
                        + ("" if n == len(test_images) else f", {n} drawn with numpy default_rng(seed)"),
            "classifier": experiment.data.name, "samplers": results}


def _real_features(test_images: np.ndarray, n: int, seed: int, classifier) -> np.ndarray:
    if n < len(test_images):
        test_images = test_images[np.random.default_rng(seed).choice(len(test_images), n, replace=False)]
    return features.classifier_features(test_images, classifier)


def _scores(real: np.ndarray, images: np.ndarray, classifier) -> dict:
    fake = features.classifier_features(images, classifier)
    (mu1, cov1, _), (mu2, cov2, _) = feature_statistics(fake), feature_statistics(real)
    precision, recall = precision_recall(real, fake, k=PRECISION_RECALL_K)
    return {"classifier_frechet_distance": frechet_distance(mu1, cov1, mu2, cov2), "precision": precision,
            "recall": recall}


def _summary_line(kind: str, scores: dict) -> str:
    parts = [f"{name.replace('classifier_frechet_distance', 'distance')} {scores[name]['mean']:.3f} +- "
             f"{scores[name]['sd']:.3f}" for name in ("classifier_frechet_distance", "precision", "recall")]
    return f"{kind:>9}: {', '.join(parts)} ({scores['seconds']:.0f} s)"

