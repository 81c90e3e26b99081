"""Paired tests of the benchmark: AUC with DeLong's variance, and the corrected resampled t-test.

Pure numpy/scipy functions on 1-D arrays; no fitting of predictive models happens here.

- :func:`auc_score` - Mann-Whitney AUC, ``P(s+ > s-) + 0.5 P(s+ = s-)``.
- :func:`delong_covariance`, :func:`delong_test`, :func:`delong_ci` - DeLong et al. (1988) variance of
  correlated AUCs through structural components, computed with the midrank algorithm of Sun & Xu (2014).
- :func:`corrected_resampled_ttest` - Nadeau & Bengio (2003) variance correction for repeated K-fold CV.

Elsewhere: calibration and Brier score in :mod:`radae.evaluate.probability_metrics`, survival metrics in
:mod:`radae.evaluate.survival_metrics`, the cluster bootstrap in :mod:`radae.evaluate.bootstrap`, Holm and
Benjamini-Hochberg in :mod:`radae.evaluate.multiplicity`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

logger = logging.getLogger(__name__)


def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC of ``score`` for binary ``y`` (1 = positive); NaN if one class is absent.

    AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), R+ the sum of midranks of the positives.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = sps.rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``k`` score vectors on the same cases.

    ``scores``: (k, n). With X the positives (m) and Y the negatives (n), the structural components are
    V10(X_i) = mean_j psi(X_i, Y_j) and V01(Y_j) = mean_i psi(X_i, Y_j) with psi = 1 if X > Y, 1/2 if
    equal, else 0. Cov(AUC) = S10 / m + S01 / n (S: sample covariances of the components). The
    components are computed from midranks: V10_i = (rank of X_i among all - rank among X) / n.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    tx = sps.rankdata(pos, axis=1)
    ty = sps.rankdata(neg, axis=1)
    tz = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    diff: float  # auc_a - auc_b
    se: float
    z: float
    p_value: float  # two-sided


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """Two-sided DeLong test of AUC(a) = AUC(b) for two correlated score vectors on the same cases."""
    aucs, cov = delong_covariance(y, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 0.0:
        # identical rankings: no evidence of a difference
        return DeLongResult(float(aucs[0]), float(aucs[1]), diff, 0.0, 0.0 if diff == 0 else float("inf"), 1.0 if diff == 0 else 0.0)
    se = float(np.sqrt(var))
    z = diff / se
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, z, float(2.0 * sps.norm.sf(abs(z))))


def delong_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC with a Wald interval from the DeLong variance, clipped to [0, 1]."""
    aucs, cov = delong_covariance(y, score[None, :])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    q = sps.norm.ppf(0.5 + level / 2.0)
    a = float(aucs[0])
    return a, max(0.0, a - q * se), min(1.0, a + q * se)



@dataclass(frozen=True)
class TTestResult:
    mean: float
    se: float
    t: float
    df: int
    p_value: float
    ci_low: float
    ci_high: float


def corrected_resampled_ttest(
    values: Sequence[float], n_train: float, n_test: float, level: float = 0.95
) -> TTestResult:
    """Nadeau-Bengio corrected resampled t-test (and interval) for the mean of per-fold values.

    For J = repeats x folds values d_j (e.g. paired metric differences), the naive variance s^2 / J
    ignores that training sets overlap; the corrected variance is (1/J + n_test/n_train) s^2.
    t = mean / sqrt(corrected variance), df = J - 1; two-sided p-value against mean = 0.
    Non-finite values (e.g. folds where a metric is undefined) are dropped.
    """
    d = np.asarray(values, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2:
        return TTestResult(float(d.mean()) if j else float("nan"), float("nan"), float("nan"), max(j - 1, 0), float("nan"), float("nan"), float("nan"))
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = float(np.sqrt((1.0 / j + n_test / n_train) * var))
    df = j - 1
    q = float(sps.t.ppf(0.5 + level / 2.0, df))
    if se == 0.0:
        return TTestResult(mean, 0.0, float("nan") if mean == 0 else float(np.sign(mean) * np.inf), df, 1.0 if mean == 0 else 0.0, mean, mean)
    t = mean / se
    return TTestResult(mean, se, t, df, float(2.0 * sps.t.sf(abs(t), df)), mean - q * se, mean + q * se)
