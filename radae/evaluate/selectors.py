"""Column filters and feature selectors fitted inside a CV fold (scikit-learn selectors).

Filters: :class:`DropNearConstant`, :class:`DropCorrelated`. Selectors (``SELECTORS[name](k, seed)``):
univariate relevance, mRMR and an L1 path, all scoring columns with the outcome-aware :func:`relevance`
(classification labels or scikit-survival structured arrays).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, validate_data

from radae.evaluate.survival import cox_score_z, is_survival_y


def relevance(X: np.ndarray, y) -> np.ndarray:
    """Univariate, outcome-aware relevance of each column (>= 0, larger = more informative).

    Classification: |2 AUC - 1| (Somers' D, rank-based). Survival: |Cox score-test z|.
    """
    X = np.asarray(X, dtype=float)
    if is_survival_y(y):
        return np.abs(cox_score_z(X, y))
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.zeros(X.shape[1])
    from scipy.stats import rankdata

    ranks = rankdata(X, axis=0)
    auc = (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.abs(2.0 * auc - 1.0)


class _Selector(SelectorMixin, BaseEstimator):
    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


class DropNearConstant(_Selector):
    """Drop near-zero-variance columns (caret's rule), fitted on training rows.

    A column goes if it is constant, or if its most frequent value is more than ``freq_ratio`` times as
    common as the second AND it has fewer than ``unique_fraction`` distinct values per row.
    At least one column (the highest-variance one) is always kept.
    """

    def __init__(self, freq_ratio: float = 19.0, unique_fraction: float = 0.1):
        self.freq_ratio = freq_ratio
        self.unique_fraction = unique_fraction

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float)
        n = X.shape[0]
        keep = np.ones(X.shape[1], dtype=bool)
        for j in range(X.shape[1]):
            _, counts = np.unique(X[:, j], return_counts=True)
            if len(counts) == 1:
                keep[j] = False
                continue
            top2 = np.sort(counts)[-2:]
            if top2[1] / top2[0] > self.freq_ratio and len(counts) / n < self.unique_fraction:
                keep[j] = False
        if not keep.any():
            keep[int(np.argmax(X.var(axis=0)))] = True
        self.support_ = keep
        return self


class DropCorrelated(_Selector):
    """Greedy decorrelation: walk the columns in order, keep one unless |Pearson r| with a kept one >= threshold."""

    def __init__(self, threshold: float = 0.95):
        self.threshold = threshold

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        keep = np.ones(p, dtype=bool)
        if self.threshold < 1.0 and p > 1:
            sd = X.std(axis=0)
            Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            corr = np.abs(Z.T @ Z) / X.shape[0]
            kept: list[int] = []
            for j in range(p):
                if kept and corr[j, kept].max() >= self.threshold:
                    keep[j] = False
                else:
                    kept.append(j)
        self.support_ = keep
        return self


class UnivariateSelector(_Selector):
    """Keep the ``k`` columns with the highest univariate relevance (see :func:`relevance`)."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        rel = relevance(X, y)
        order = np.argsort(-rel, kind="stable")[: min(self.k, X.shape[1])]
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order] = True
        self.relevance_ = rel
        return self


class MRMRSelector(_Selector):
    """Greedy minimum-redundancy maximum-relevance selection of ``k`` columns.

    score_j = relevance_j / max(relevance) - mean_{s in selected} |r(j, s)|; the first pick is the most
    relevant column. Relevance as in :func:`relevance`, redundancy as absolute Pearson correlation.
    """

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        rel = relevance(X, y)
        rel = rel / rel.max() if rel.max() > 0 else rel
        sd = X.std(axis=0)
        Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        corr = np.abs(Z.T @ Z) / X.shape[0]
        selected = [int(np.argmax(rel))]
        red_sum = corr[:, selected[0]].copy()
        while len(selected) < min(self.k, p):
            score = rel - red_sum / len(selected)
            score[selected] = -np.inf
            j = int(np.argmax(score))
            selected.append(j)
            red_sum += corr[:, j]
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[selected] = True
        return self


class L1Selector(_Selector):
    """Keep the nonzero coefficients of an L1 path model with at most ``k`` of them.

    Classification: L1 logistic regression over a grid of C from the smallest nonzero one upwards.
    Survival: Coxnet lasso path. The densest model with <= k nonzero coefficients wins; if none has any,
    the most relevant single column is kept. Expects standardised inputs (the pipeline scales first).
    """

    def __init__(self, k: int = 10, random_state: int | None = None):
        self.k = k
        self.random_state = random_state

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        support = np.zeros(p, dtype=bool)
        if is_survival_y(y):
            from sksurv.linear_model import CoxnetSurvivalAnalysis

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    path = CoxnetSurvivalAnalysis(l1_ratio=1.0, n_alphas=50, alpha_min_ratio=0.01).fit(X, y)
                    coefs = np.asarray(path.coef_).T  # (n_alphas, p), strongest penalty first
                except ArithmeticError:
                    coefs = np.zeros((0, p))
        else:
            from sklearn.svm import l1_min_c

            yb = np.asarray(y).astype(int)
            c0 = l1_min_c(X, yb, loss="log") * 1.01
            coefs = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for c in c0 * np.logspace(0, 3, 20):
                    m = LogisticRegression(C=c, l1_ratio=1.0, solver="liblinear", random_state=self.random_state).fit(X, yb)
                    coefs.append(m.coef_[0])
            coefs = np.asarray(coefs)
        for row in coefs:
            nz = np.abs(row) > 1e-10
            if nz.sum() <= self.k and nz.any():
                support = nz
        if not support.any():
            support[int(np.argmax(relevance(X, y)))] = True
        self.support_ = support
        return self


SELECTORS: dict[str, Callable[[int, int], BaseEstimator]] = {
    "univariate": lambda k, seed: UnivariateSelector(k),
    "mrmr": lambda k, seed: MRMRSelector(k),
    "l1": lambda k, seed: L1Selector(k, random_state=seed),
}

