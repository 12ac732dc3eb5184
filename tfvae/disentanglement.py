"""Disentanglement metrics: how well the dimensions of a representation line up with known factors.

    data = tfvae.factors.load_factor_dataset("dsprites_small")
    codes, factors = encode(representation_fn, data, 10_000, seed=0)   # e.g. posterior means [N, D]
    mig(codes, factors)["mig"]
    metric_spread(factor_vae_score, representation_fn, data)           # mean and sd over seeds 0, 1, 2

From a sample, pure functions of codes [N, D] (floats) and factor indices [N, F] (ints): `mig` (Chen et al.,
2018), `sap` (Kumar et al., 2018), `dci` (Eastwood & Williams, 2018), and without factors
`gaussian_total_correlation` and `active_units`; `informative_factors` names the factor each dimension is most
informative about (for labelling traversals). By intervention, from a `representation_fn` (float32 images
[b, H, W, C] in [0, 1] -> codes [b, D]) and a `tfvae.factors.FactorDataset`: `beta_vae_score` (Higgins et al.,
2017) and `factor_vae_score` (Kim & Mnih, 2018). Each returns a dict whose first entry is the score; each
docstring states the choices (bins, sample sizes, classifier, split). Every random step draws from
`np.random.default_rng(seed)`, and the estimators are our own (`tfvae.estimators`), so a seed gives the same
numbers with any NumPy or scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfvae import checks
from tfvae import estimators as est

__all__ = ["check_codes", "check_factors", "mig", "sap", "split", "dci", "gaussian_total_correlation",
    "active_units", "represent", "encode", "beta_vae_score", "factor_vae_score", "evaluate_representation",
    "metric_spread"]

RepresentationFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- checks
def check_codes(codes, name: str = "codes") -> np.ndarray:
    """`codes` as float64 [N, D] with N >= 2; a one-line ValueError naming `name` otherwise (NaN, Inf, shape)."""
    try:
        array = np.asarray(codes, np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a float array [N, D]; got {type(codes).__name__}") from error
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must have shape [N, D] with N >= 2 examples; got shape {array.shape}")
    for label, bad in (("NaN", np.isnan(array)), ("infinite", np.isinf(array))):
        if bad.any():
            raise ValueError(f"{name} contain {int(bad.sum())} {label} values (first in dimension "
                             f"{int(np.argwhere(bad)[0, 1])}); codes must be finite")
    return array


def check_factors(factors, n: int, name: str = "factors") -> np.ndarray:
    """`factors` as int64 [n, F], each column with >= 2 distinct values; a ValueError naming `name` otherwise."""
    array = np.asarray(factors)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [N, F] (factor indices); got shape {array.shape}")
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} rows but the codes have {n}: one row of factor indices per code")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer factor indices; got dtype {array.dtype}")
    for f in range(array.shape[1]):
        if np.all(array[:, f] == array[0, f]):
            raise ValueError(f"{name} column {f} is constant (index {int(array[0, f])} in every row): each "
                             "factor needs at least 2 values in the sample")
    return array.astype(np.int64)


def _codes_and_factors(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes = check_codes(codes)
    return codes, check_factors(factors, len(codes))


# --------------------------------------------------------------------------- from a sample
def mig(codes, factors, *, bins: int = 20) -> dict:
    """The mutual information gap (Chen et al., 2018, eq. 7).

    Each code dimension is cut into `bins` equal-width bins between its min and max over the sample
    (`estimators.discretize`, as disentanglement_lib's 20 bins); I(v_d; f) is the empirical mutual
    information of the binned dimension and the factor index, from their contingency table
    (`estimators.mutual_information`, nats). Per factor: (largest I - second largest I) / H(f), H(f) the
    factor's empirical entropy; MIG is their mean. With one code dimension the second largest is 0. A factor
    with more than `bins` values cannot reach 1: binning merges its values.

    Returns:
      {"mig": float in [0, 1], "per_factor": [F], "mutual_information": [D, F] nats, "factor_entropy": [F] nats}
    """
    codes, factors = _codes_and_factors(codes, factors)
    checks.positive_int(bins, "bins")
    binned = est.discretize(codes, bins)
    info = np.array([[est.mutual_information(binned[:, d], factors[:, f]) for f in range(factors.shape[1])]
                     for d in range(codes.shape[1])])
    entropy = np.array([est.entropy(factors[:, f]) for f in range(factors.shape[1])])
    ranked = np.sort(info, axis=0)[::-1]
    second = ranked[1] if len(ranked) > 1 else np.zeros_like(ranked[0])
    per_factor = (ranked[0] - second) / entropy
    return {"mig": float(per_factor.mean()), "per_factor": per_factor, "mutual_information": info,
            "factor_entropy": entropy}


def informative_factors(codes, factors, *, bins: int = 20) -> dict:
    """The factor each code dimension is most informative about: argmax_f I(v_d; f) / H(f), as `mig` bins it.

    I(v_d; f) / H(f) is the share of factor f's entropy that dimension d, cut into `bins` equal-width bins,
    carries (0 to 1; `mig`'s normalization, so factors with more values are not favoured). A dimension that
    carries nothing still gets a factor, with a share near 0: read the share beside the name.

    Returns:
      {"factor": int64 [D] (a factor's column), "share": [D] (its I / H), "normalized_mutual_information": [D, F]}
    """
    scores = mig(codes, factors, bins=bins)
    normalized = scores["mutual_information"] / scores["factor_entropy"][None, :]
    best = np.argmax(normalized, axis=1).astype(np.int64)
    return {"factor": best, "share": normalized[np.arange(len(best)), best],
            "normalized_mutual_information": normalized}


def sap(codes, factors) -> dict:
    """The separated attribute predictability score (Kumar et al., 2018, sec. 3), continuous version.

    Score S[d, f] = R^2 of the least-squares line predicting factor index f from code dimension d alone, over
    the whole sample (= their squared Pearson correlation; 0 for a constant dimension). Kumar et al. use this
    for continuous factors; here every factor index is treated as a number (so the 3 shapes of dSprites are
    ordinal), which keeps the score exact and free of a classifier's settings. Per factor: the gap between
    the two largest S over dimensions (0 with one dimension); SAP is their mean.

    Returns:
      {"sap": float in [0, 1], "per_factor": [F], "score_matrix": [D, F]}
    """
    codes, factors = _codes_and_factors(codes, factors)
    z, _, _ = est.standardize(codes)
    y, _, _ = est.standardize(factors.astype(np.float64))
    scores = np.clip((z.T @ y / len(z)) ** 2, 0.0, 1.0)
    ranked = np.sort(scores, axis=0)[::-1]
    second = ranked[1] if len(ranked) > 1 else np.zeros_like(ranked[0])
    per_factor = ranked[0] - second
    return {"sap": float(per_factor.mean()), "per_factor": per_factor, "score_matrix": scores}


def _normalized_entropy(weights: np.ndarray) -> float:
    """The entropy of weights / sum(weights), in units of log(len(weights)) (0 for a single weight)."""
    if len(weights) < 2:
        return 0.0
    p = weights[weights > 0] / weights.sum()
    return float(-np.sum(p * np.log(p)) / np.log(len(weights)))


def split(codes, factors, train_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """A random train/test split of a sample: (train codes, train factors, test codes, test factors).

    The first round(train_fraction * N) positions of `np.random.default_rng(seed).permutation(N)` train.
    """
    codes, factors = _codes_and_factors(codes, factors)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1; got {train_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(codes))
    cut = int(round(train_fraction * len(codes)))
    if not 0 < cut < len(codes):
        raise ValueError(f"train_fraction={train_fraction} of {len(codes)} examples leaves an empty split")
    return codes[order[:cut]], factors[order[:cut]], codes[order[cut:]], factors[order[cut:]]


def dci(codes, factors, *, test_codes=None, test_factors=None, train_fraction: float = 0.8, seed: int = 0,
        alpha: float = 0.02) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams, 2018), with a lasso regressor.

    Regressor: for each factor, a lasso (`estimators.lasso`, penalty `alpha` = 0.02) from the standardized
    codes to the standardized factor index, fitted on the training codes (Eastwood & Williams's linear
    choice; lasso leaves exact zeros for dimensions that carry nothing). Importance R[d, f] = |weight|.
    Disentanglement: sum_d rho_d (1 - H_F(R[d, :] / sum_f R[d, :])), rho_d = d's share of all importance,
    H_F the entropy in units of log F. Completeness: the same over dimensions per factor (H_D in units of
    log D), weighted by each factor's share of importance (as disentanglement_lib). Informativeness: mean over
    factors of the held-out R^2 of the lasso's prediction (clipped at 0; standardization from the training
    codes). A code with no importance anywhere scores 0 on all three.

    Split: `test_codes` and `test_factors` if given (then `codes` and `factors` all train), else a random
    split of the sample (`split`, train_fraction 0.8, `seed`).

    Returns:
      {"disentanglement", "completeness", "informativeness": floats in [0, 1], "importance": [D, F],
        "informativeness_per_factor": [F]}
    """
    checks.non_negative_number(alpha, "alpha")
    if (test_codes is None) != (test_factors is None):
        raise ValueError("test_codes and test_factors go together: pass both or neither")
    if test_codes is None:
        codes, factors, test_codes, test_factors = split(codes, factors, train_fraction, seed)
    else:
        codes, factors = _codes_and_factors(codes, factors)
        test_codes = check_codes(test_codes, "test_codes")
        test_factors = check_factors(test_factors, len(test_codes), "test_factors")
        if test_codes.shape[1] != codes.shape[1] or test_factors.shape[1] != factors.shape[1]:
            raise ValueError(f"test_codes / test_factors have {test_codes.shape[1]} / {test_factors.shape[1]} "
                             f"columns; codes / factors have {codes.shape[1]} / {factors.shape[1]}")
    x, x_mean, x_std = est.standardize(codes)
    y, y_mean, y_std = est.standardize(factors.astype(np.float64))
    weights = est.lasso(x, y, alpha)
    importance = np.abs(weights)
    total = importance.sum()
    if total == 0:
        zeros = np.zeros(factors.shape[1])
        return {"disentanglement": 0.0, "completeness": 0.0, "informativeness": 0.0, "importance": importance,
                "informativeness_per_factor": zeros}
    by_dim, by_factor = importance.sum(1), importance.sum(0)
    disentanglement = sum(by_dim[d] / total * (1 - _normalized_entropy(importance[d]))
                          for d in range(len(by_dim)) if by_dim[d] > 0)
    completeness = sum(by_factor[f] / total * (1 - _normalized_entropy(importance[:, f]))
                       for f in range(len(by_factor)) if by_factor[f] > 0)
    predicted = est.standardize(test_codes, x_mean, x_std)[0] @ weights
    truth = est.standardize(test_factors.astype(np.float64), y_mean, y_std)[0]
    residual = ((truth - predicted) ** 2).sum(0)
    spread = ((truth - truth.mean(0)) ** 2).sum(0)
    r2 = np.clip(1 - residual / np.where(spread > 0, spread, 1.0), 0.0, 1.0)
    return {"disentanglement": float(max(disentanglement, 0.0)), "completeness": float(max(completeness, 0.0)),
            "informativeness": float(r2.mean()), "importance": importance, "informativeness_per_factor": r2}


def gaussian_total_correlation(means, scales=None) -> dict:
    """The total correlation of a Gaussian fitted to the aggregate posterior, in nats.

    TC = KL(q(z) || prod_d q(z_d)) for q(z) = N(mean, C): 0.5 (sum_d log C_dd - log det C). C is the
    covariance (ddof 0) of `means` [N, D]; with `scales` [N, D] (posterior standard deviations) it is the
    aggregate posterior's, Cov(means) + mean(scales^2) on the diagonal. Dimensions with zero variance are left
    out (a constant code has TC 0); a singular C (a dimension copied) gives inf. Nothing is sampled.

    Returns:
      {"total_correlation": nats >= 0, "num_dims": dimensions used}
    """
    means = check_codes(means, "means")
    covariance = np.atleast_2d(np.cov(means, rowvar=False, ddof=0))
    if scales is not None:
        scales = check_codes(scales, "scales")
        if scales.shape != means.shape:
            raise ValueError(f"scales must have the shape of means {means.shape}; got {scales.shape}")
        covariance = covariance + np.diag(np.mean(scales**2, axis=0))
    used = np.diag(covariance) > 0
    covariance = covariance[np.ix_(used, used)]
    if not used.any():
        return {"total_correlation": 0.0, "num_dims": 0}
    sign, logdet = np.linalg.slogdet(covariance)
    tc = np.inf if sign <= 0 else 0.5 * (np.sum(np.log(np.diag(covariance))) - logdet)
    return {"total_correlation": float(max(tc, 0.0)), "num_dims": int(used.sum())}


def active_units(means, *, threshold: float = 0.01) -> dict:
    """Active units (Burda et al., 2016): dimensions whose posterior mean varies over the data, Var > threshold.

    Var is the variance (ddof 0) of `means` [N, D] over the sample; threshold 0.01 as Burda et al.

    Returns:
      {"active_units": int, "active": bool [D], "variance": [D]}
    """
    means = check_codes(means, "means")
    checks.non_negative_number(threshold, "threshold")
    variance = means.var(0)
    return {"active_units": int((variance > threshold).sum()), "active": variance > threshold, "variance": variance}


# --------------------------------------------------------------------------- by intervention on a factor dataset
def represent(representation_fn: RepresentationFn, dataset, factor_indices, *, batch_size: int = 1024) -> np.ndarray:
    """Codes float64 [N, D] of the images of factor indices [N, F], made and encoded `batch_size` at a time.

    `representation_fn` gets float32 images [b, H, W, C] in [0, 1] (uint8 / 255) and returns codes [b, D]
    (a NumPy array or a tensor).
    """
    checks.positive_int(batch_size, "batch_size")
    factor_indices = np.asarray(factor_indices)
    parts = []
    for start in range(0, len(factor_indices), batch_size):
        images = dataset.images(factor_indices[start:start + batch_size]).astype(np.float32) / 255.0
        codes = np.asarray(representation_fn(images), np.float64)
        if codes.ndim != 2 or len(codes) != len(images):
            raise ValueError(f"representation_fn must return codes [b, D] for images [b, H, W, C]; got shape "
                             f"{codes.shape} for {len(images)} images")
        parts.append(codes)
    return check_codes(np.concatenate(parts), "representation_fn's codes")


def encode(representation_fn: RepresentationFn, dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images drawn uniformly (`dataset.sample_factors` with `default_rng(seed)`), encoded: (codes, factors)."""
    factors = dataset.sample_factors(checks.positive_int(n, "n"), np.random.default_rng(seed))
    return represent(representation_fn, dataset, factors), factors


def _beta_vae_points(representation_fn, dataset, n: int, batch_size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n points of the beta-VAE score: (mean |z1 - z2| over batch_size pairs [n, D], fixed factor [n])."""
    num_factors = dataset.num_factors
    fixed = rng.integers(0, num_factors, n)
    first = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, num_factors)
    second = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, num_factors)
    rows = np.arange(n)[:, None], np.arange(batch_size)[None, :], fixed[:, None]
    second[rows] = first[rows]
    z1 = represent(representation_fn, dataset, first.reshape(-1, num_factors)).reshape(n, batch_size, -1)
    z2 = represent(representation_fn, dataset, second.reshape(-1, num_factors)).reshape(n, batch_size, -1)
    return np.abs(z1 - z2).mean(1), fixed


def beta_vae_score(representation_fn: RepresentationFn, dataset, *, seed: int, batch_size: int = 64,
                   num_train: int = 1000, num_eval: int = 500) -> dict:
    """The beta-VAE score (Higgins et al., 2017, sec. 3): accuracy of a linear classifier naming the fixed factor.

    A point: a factor k drawn uniformly, `batch_size` pairs of images drawn uniformly that share the value of
    factor k within each pair, the feature mean_pairs |z1 - z2| [D]. Classifier: multinomial logistic
    regression (`estimators.softmax_regression`: L2 penalty 1e-3, 2000 accelerated full-batch gradient steps,
    from zeros) on features standardized with the training points' mean and std. `num_train` training and
    `num_eval` evaluation points (disentanglement_lib: 10,000 and 5,000; fewer here for a CPU, so the score
    moves by about sqrt(p (1 - p) / num_eval) between seeds). A code that ignores the images scores the
    share of the classifier's one guess, about 1 / F.

    Returns:
      {"beta_vae_score": evaluation accuracy, "train_accuracy", "eval_accuracy"}
    """
    for value, name in ((batch_size, "batch_size"), (num_train, "num_train"), (num_eval, "num_eval")):
        checks.positive_int(value, name)
    rng = np.random.default_rng(seed)
    train_x, train_y = _beta_vae_points(representation_fn, dataset, num_train, batch_size, rng)
    eval_x, eval_y = _beta_vae_points(representation_fn, dataset, num_eval, batch_size, rng)
    x, mean, std = est.standardize(train_x)
    weights, biases = est.softmax_regression(x, train_y, dataset.num_factors)
    train_accuracy = float(np.mean(est.predict_class(x, weights, biases) == train_y))
    eval_accuracy = float(np.mean(est.predict_class(est.standardize(eval_x, mean, std)[0], weights, biases) == eval_y))
    return {"beta_vae_score": eval_accuracy, "train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


def _factor_vae_votes(representation_fn, dataset, n: int, batch_size: int, scale: np.ndarray, active: np.ndarray,
                      rng) -> np.ndarray:
    """Votes [D, F]: how often dimension d had the least normalized variance while factor f was fixed."""
    num_factors = dataset.num_factors
    fixed = rng.integers(0, num_factors, n)
    factors = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, num_factors)
    factors[np.arange(n), :, fixed] = factors[np.arange(n), :1, fixed]  # every image takes the first's value
    codes = represent(representation_fn, dataset, factors.reshape(-1, num_factors)).reshape(n, batch_size, -1)
    variance = (codes[..., active] / scale[active]).var(1, ddof=1)
    dims = np.flatnonzero(active)[np.argmin(variance, axis=1)]
    votes = np.zeros((len(active), num_factors), np.int64)
    np.add.at(votes, (dims, fixed), 1)
    return votes


def factor_vae_score(representation_fn: RepresentationFn, dataset, *, seed: int, batch_size: int = 64,
                     num_train: int = 1000, num_eval: int = 500, num_variance_estimate: int = 10_000,
                     prune_std: float = 0.05) -> dict:
    """The FactorVAE score (Kim & Mnih, 2018, sec. 4): accuracy of a majority vote naming the fixed factor.

    Each dimension is divided by its std (ddof 1) over `num_variance_estimate` images drawn uniformly;
    dimensions with std < `prune_std` (0.05, in code units: collapsed to a constant) are left out (Kim &
    Mnih prune collapsed dimensions; disentanglement_lib keeps all with std > 0). A point: a factor k drawn
    uniformly, `batch_size` images drawn uniformly with factor k set to one value, the vote (argmin_d of the
    normalized variance (ddof 1) over the batch, k). Classifier: each dimension predicts the factor it was
    voted most with in the `num_train` training points (ties: the lowest factor); the score is its accuracy
    on `num_eval` evaluation points (disentanglement_lib: 10,000 and 5,000). No active dimension: 0.

    Returns:
      {"factor_vae_score": evaluation accuracy, "train_accuracy", "eval_accuracy", "num_active_dims"}
    """
    for value, name in ((batch_size, "batch_size"), (num_train, "num_train"), (num_eval, "num_eval"),
                        (num_variance_estimate, "num_variance_estimate")):
        checks.positive_int(value, name)
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for a variance within the batch; got {batch_size}")
    checks.non_negative_number(prune_std, "prune_std")
    rng = np.random.default_rng(seed)
    scale = represent(representation_fn, dataset, dataset.sample_factors(num_variance_estimate, rng)).std(0, ddof=1)
    active = scale >= max(prune_std, np.finfo(np.float64).tiny)
    if not active.any():
        return {"factor_vae_score": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train = _factor_vae_votes(representation_fn, dataset, num_train, batch_size, scale, active, rng)
    evaluation = _factor_vae_votes(representation_fn, dataset, num_eval, batch_size, scale, active, rng)
    guess = np.argmax(train, axis=1)
    dims = np.arange(len(guess))
    train_accuracy = float(train[dims, guess].sum() / num_train)
    eval_accuracy = float(evaluation[dims, guess].sum() / num_eval)
    return {"factor_vae_score": eval_accuracy, "train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy,
            "num_active_dims": int(active.sum())}


# --------------------------------------------------------------------------- all of them, and their spread
def evaluate_representation(representation_fn: RepresentationFn, dataset, *, seed: int, num_points: int = 10_000,
                            **intervention) -> dict:
    """Every metric of a representation on a factor dataset, as one flat dict of floats.

    MIG, SAP, DCI (its own 0.8 split), total correlation and active units on `num_points` images drawn with
    `seed`; the beta-VAE and FactorVAE scores with `seed` too (`intervention`: their batch_size, num_train,
    num_eval).
    """
    codes, factors = encode(representation_fn, dataset, num_points, seed)
    scores = {"mig": mig(codes, factors)["mig"], "sap": sap(codes, factors)["sap"]}
    scores.update({k: v for k, v in dci(codes, factors, seed=seed).items() if np.isscalar(v)})
    scores["total_correlation"] = gaussian_total_correlation(codes)["total_correlation"]
    scores["active_units"] = active_units(codes)["active_units"]
    scores["beta_vae_score"] = beta_vae_score(representation_fn, dataset, seed=seed, **intervention)["beta_vae_score"]
    factor_vae = factor_vae_score(representation_fn, dataset, seed=seed, **intervention)
    scores["factor_vae_score"] = factor_vae["factor_vae_score"]
    return scores


def metric_spread(metric: Callable[..., dict], *args, seeds=(0, 1, 2), **kwargs) -> dict[str, dict]:
    """A metric's own spread over evaluation seeds: {key: {"mean", "sd", "values"}} for its scalar entries.

    Calls metric(*args, seed=s, **kwargs) for each seed; sd is the sample standard deviation (ddof 1; 0 for
    one seed). The spread comes from the metric's sampling alone (the representation is fixed), so it bounds
    how finely scores of one model can be told apart.
    """
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    runs = [metric(*args, seed=seed, **kwargs) for seed in seeds]
    spread = {}
    for key, value in runs[0].items():
        if np.isscalar(value):
            values = np.array([float(run[key]) for run in runs])
            sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            spread[key] = {"mean": float(values.mean()), "sd": sd, "values": values.tolist()}
    return spread
