"""The small estimators inside the disentanglement metrics, written out so no score depends on a library's defaults.

Discrete entropy and mutual information from counts (nats), equal-width binning, standardisation, a lasso by
coordinate descent and a multinomial logistic regression by accelerated gradient descent. All deterministic:
no random initialisation, fixed iteration counts and tolerances. (Why written out: scikit-learn's
`mutual_info_score` changed what MIG returned, google-research/disentanglement_lib#33.)
"""

from __future__ import annotations

import numpy as np


def discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each column of codes [N, D] cut into `bins` equal-width bins between its min and max: int64 [N, D].

    Bin b holds values in [min + b w, min + (b + 1) w), w = (max - min) / bins, and the maximum falls in
    the last bin (np.histogram's edges). A constant column is all bin 0.
    """
    codes = np.asarray(codes, np.float64)
    out = np.zeros(codes.shape, np.int64)
    for d in range(codes.shape[1]):
        low, high = codes[:, d].min(), codes[:, d].max()
        if high > low:
            edges = np.linspace(low, high, bins + 1)
            out[:, d] = np.digitize(codes[:, d], edges[1:-1])
    return out


def entropy(labels: np.ndarray) -> float:
    """The empirical entropy of discrete labels [N] (any hashable values), in nats."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """The empirical mutual information of two discrete label arrays [N], in nats, from their contingency table.

    I(a; b) = sum_xy p(x, y) log(p(x, y) / (p(x) p(y))) over the cells with p(x, y) > 0; 0 <= I <= min(H(a), H(b)).
    """
    _, a_index = np.unique(np.asarray(a), return_inverse=True)
    _, b_index = np.unique(np.asarray(b), return_inverse=True)
    rows, columns = a_index.max() + 1, b_index.max() + 1
    joint = np.bincount(a_index * columns + b_index, minlength=rows * columns).reshape(rows, columns)
    p = joint / joint.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    cells = p > 0
    return float(max(np.sum(p[cells] * (np.log(p[cells]) - np.log((pa * pb)[cells]))), 0.0))


def standardize(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / std per column (mean and std from x unless given); constant columns (std 0) become 0.

    Returns (standardized x, mean, std); the std is the population one (ddof 0).
    """
    x = np.asarray(x, np.float64)
    mean = x.mean(0) if mean is None else mean
    std = x.std(0) if std is None else std
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (x - mean) / safe, 0.0), mean, std


def lasso(x: np.ndarray, y: np.ndarray, alpha: float, *, max_sweeps: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """Lasso weights [D, T]: argmin_w (1 / 2N) ||y - x w||^2 + alpha ||w||_1, one column per target.

    x [N, D] and y [N, T] are expected standardized (no intercept is fitted). Cyclic coordinate descent from
    w = 0 over the Gram matrix, in the order of the columns, until no weight moves by more than `tol` in a
    sweep. Exact zeros where a column's correlation with the residual stays below alpha. Of two identical
    columns the first takes all the weight.
    """
    n = len(x)
    gram, target = x.T @ x / n, x.T @ y / n
    weights = np.zeros((x.shape[1], y.shape[1]))
    for _ in range(max_sweeps):
        largest_step = 0.0
        for j in range(x.shape[1]):
            if gram[j, j] <= 0:
                continue
            rho = target[j] - gram[j] @ weights + gram[j, j] * weights[j]
            new = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0.0) / gram[j, j]
            largest_step = max(largest_step, float(np.max(np.abs(new - weights[j]))))
            weights[j] = new
        if largest_step <= tol:
            break
    return weights


def softmax_regression(x: np.ndarray, labels: np.ndarray, num_classes: int, *, l2: float = 1e-3,
                       steps: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression: (weights [D, K], biases [K]), by Nesterov-accelerated gradient descent.

    Minimises mean cross-entropy + l2 / 2 ||weights||^2 (biases not penalised) from all-zero parameters, `steps`
    full-batch steps of size 1 / L, L = lambda_max([x 1]^T [x 1] / N) / 2 + l2 (a bound on the loss's
    curvature). Pass standardized x: l2 is in those units.
    """
    n = len(x)
    design = np.concatenate([x, np.ones((n, 1))], axis=1)
    one_hot = np.eye(num_classes)[labels]
    curvature = np.linalg.eigvalsh(design.T @ design / n)[-1] / 2 + l2
    penalty = np.ones((design.shape[1], 1))
    penalty[-1] = 0.0
    params = np.zeros((design.shape[1], num_classes))
    previous = params
    for step in range(steps):
        look = params + step / (step + 3) * (params - previous)
        logits = design @ look
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        gradient = design.T @ (probs - one_hot) / n + l2 * penalty * look
        previous, params = params, look - gradient / curvature
    return params[:-1], params[-1]


def predict_class(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """The most probable class of each row of x [N, D]: int64 [N] (ties: the lowest class)."""
    return np.argmax(x @ weights + biases, axis=1).astype(np.int64)
