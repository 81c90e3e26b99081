"""Metrics of predicted probabilities: calibration slope and intercept, Brier score, balanced accuracy.

- :func:`calibration_slope_intercept` - logistic recalibration (Cox 1958; Van Calster 2019).
- :func:`brier_score`, :func:`balanced_accuracy` (at a given threshold); :func:`logit` with clipping.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def calibration_slope_intercept(y: np.ndarray, prob: np.ndarray, max_iter: int = 50) -> tuple[float, float]:
    """Calibration slope and intercept (calibration-in-the-large) of predicted probabilities.

    slope b: from logit P(y=1) = a + b * logit(p) (ideal 1; < 1 means predictions too extreme).
    intercept a: from logit P(y=1) = a + 1 * logit(p), i.e. logit(p) as an offset (ideal 0; > 0 means
    risks are underestimated on average). Both by Newton-Raphson on the binomial likelihood.
    Returns NaN for a quantity that does not converge (e.g. perfectly separated folds) or one class.
    """
    y = np.asarray(y, dtype=float)
    if y.min() == y.max():
        return float("nan"), float("nan")
    lp = logit(prob)
    # slope: two-parameter fit
    X = np.column_stack([np.ones_like(lp), lp])
    beta = np.zeros(2)
    slope = float("nan")
    for _ in range(max_iter):
        mu = expit(X @ beta)
        w = mu * (1.0 - mu)
        hess = X.T @ (X * w[:, None])
        grad = X.T @ (y - mu)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if not np.all(np.isfinite(beta)) or abs(beta[1]) > 1e3:
            break
        if np.max(np.abs(step)) < 1e-10:
            slope = float(beta[1])
            break
    # intercept with the linear predictor as offset
    a = 0.0
    intercept = float("nan")
    for _ in range(max_iter):
        mu = expit(a + lp)
        w = float(np.sum(mu * (1.0 - mu)))
        if w <= 0:
            break
        step = float(np.sum(y - mu)) / w
        a += step
        if not np.isfinite(a) or abs(a) > 1e3:
            break
        if abs(step) < 1e-10:
            intercept = a
            break
    return slope, intercept


def brier_score(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean squared difference between predicted probability and the 0/1 outcome."""
    return float(np.mean((np.asarray(prob, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def balanced_accuracy(y: np.ndarray, prob: np.ndarray, threshold: float) -> float:
    """Mean of sensitivity and specificity of ``prob >= threshold``; NaN if a class is absent."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob, dtype=float) >= threshold
    if y.all() or (~y).all():
        return float("nan")
    return float(0.5 * (pred[y].mean() + (~pred[~y]).mean()))


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Per value, the index of its quantile bin (``n_bins`` bins by quantiles; ties merge bins, so fewer may remain)."""
    values = np.asarray(values, dtype=float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)))
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))
