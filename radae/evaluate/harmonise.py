"""ComBat harmonisation as a scikit-learn transformer, fitted inside each training fold.

ComBat (Johnson, Li & Rabinovic 2007; Fortin et al. 2017, the neuroCombat implementation) models each
feature g of row j in batch i as ``x_ijg = alpha_g + gamma_ig + delta_ig * eps_ijg`` and removes the batch
location ``gamma`` and scale ``delta``:

1. alpha_g = grand mean (batch means weighted by batch size), sigma_g^2 = pooled residual variance around
   the batch means; rows are standardised ``z = (x - alpha) / sigma``.
2. gamma_hat_ig = mean of z in batch i, delta_hat_ig^2 = its variance (ddof 1).
3. Parametric empirical Bayes: gamma ~ N(gamma_bar_i, tau_i^2), delta^2 ~ InvGamma(a_i, b_i) with moments
   across features; iterate the posterior means gamma*, delta*^2 to convergence (relative change < 1e-4).
4. Adjusted ``x* = sigma (z - gamma*_i) / delta*_i + alpha``.

No outcome or covariate enters (a label as a ComBat covariate would leak into the test rows); ``fit``
estimates everything on the training rows and ``transform`` applies those estimates to any rows of a
batch seen in training, the way ``neuroCombatFromTraining`` does. A batch never seen in training cannot
be corrected (its effect cannot be estimated from rows that are not there): ``unseen="raise"`` refuses it,
``unseen="identity"`` (what the CV pipelines use) leaves those rows as they are - a small inner-CV
training split may lack a site, and tuning should not fail for it. Locked models and ``radae predict``
refuse a site the development cohort did not have, before ComBat is reached.

The batch travels as the LAST input column (an integer code), so the transformer fits in a ``Pipeline``
whose other steps never see it. ``columns`` (bool mask over the feature columns) says which columns are
harmonised; the others (clinical covariates) pass through unchanged. Missing values are ignored in the
estimates and stay missing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from radae.util.errors import BenchmarkError

CONVERGENCE = 1e-4


def batch_codes(values: pd.Series, column: str) -> tuple[np.ndarray, list[str]]:
    """Integer code per row (index into the sorted batch labels) and the labels; missing -> BenchmarkError."""
    text = values.astype("string").str.strip()
    if text.isna().any() or (text == "").any():
        raise BenchmarkError(f"benchmark.harmonise.batch: column {column!r} is empty for {int((text.isna() | (text == '')).sum())} row(s) -> fill it in the manifest")
    labels = sorted(text.unique().tolist())
    if len(labels) < 2:
        raise BenchmarkError(f"benchmark.harmonise.batch: column {column!r} has one value ({labels[0]!r}); ComBat needs >= 2 batches")
    code = {v: i for i, v in enumerate(labels)}
    return text.map(code).to_numpy(dtype=float), labels


def _eb_batch(z: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Posterior gamma*, delta*^2 of one batch (z: rows x features, standardised; NaN ignored)."""
    n = np.isfinite(z).sum(axis=0).astype(float)
    g_bar = float(np.mean(g_hat))
    t2 = float(np.var(g_hat, ddof=1)) if len(g_hat) > 1 else 0.0
    m, s2 = float(np.mean(d_hat)), float(np.var(d_hat, ddof=1)) if len(d_hat) > 1 else 0.0
    if s2 <= 0 or t2 <= 0:  # no spread across features: the prior is degenerate, keep the per-feature estimates
        return g_hat, d_hat
    a = (2.0 * s2 + m**2) / s2
    b = (m * s2 + m**3) / s2
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for _ in range(max_iter):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = np.nansum((z - g_new) ** 2, axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # signed denominator, as in sva's R code and neuroCombat (so results match them)
            change = max(np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if not change > CONVERGENCE:
            break
    return g_old, d_old


class ComBat(TransformerMixin, BaseEstimator):
    """Parametric empirical-Bayes ComBat; the last input column is the batch code (dropped on output)."""

    def __init__(self, columns: np.ndarray | None = None, unseen: str = "raise"):
        self.columns = columns
        self.unseen = unseen

    def _split(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError("ComBat expects features plus a final batch-code column")
        return X[:, :-1], X[:, -1].astype(int)

    def fit(self, X, y=None):
        F, batch = self._split(X)
        cols = np.ones(F.shape[1], dtype=bool) if self.columns is None else np.asarray(self.columns, dtype=bool)
        if len(cols) != F.shape[1]:
            raise ValueError(f"ComBat: columns mask has {len(cols)} entries for {F.shape[1]} features")
        D = F[:, cols]
        self.batches_ = np.unique(batch)
        self.n_features_in_ = X.shape[1]
        counts = np.array([(batch == b).sum() for b in self.batches_], dtype=float)
        means = np.vstack([np.nanmean(D[batch == b], axis=0) if (batch == b).any() else np.zeros(D.shape[1]) for b in self.batches_])
        ok = np.isfinite(D)
        # grand mean: batch means weighted by the rows observed per batch and feature
        w = np.vstack([ok[batch == b].sum(axis=0) for b in self.batches_]).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = np.nansum(np.nan_to_num(means) * w, axis=0) / w.sum(axis=0)
        fitted = means[np.searchsorted(self.batches_, batch)]
        var = np.nanmean((D - fitted) ** 2, axis=0)
        var = np.where(np.isfinite(var) & (var > 0), var, 1.0)  # constant feature: leave it as it is
        alpha = np.where(np.isfinite(alpha), alpha, 0.0)
        Z = (D - alpha) / np.sqrt(var)
        gammas, deltas = [], []
        for b, nb in zip(self.batches_, counts):
            zb = Z[batch == b]
            g_hat = np.nan_to_num(np.nanmean(zb, axis=0))
            d_hat = np.nanvar(zb, axis=0, ddof=1) if nb > 1 else np.ones(D.shape[1])
            d_hat = np.where(np.isfinite(d_hat) & (d_hat > 0), d_hat, 1.0)
            g, d = _eb_batch(zb, g_hat, d_hat)
            gammas.append(g)
            deltas.append(d)
        self.columns_ = cols
        self.alpha_, self.var_pooled_ = alpha, var
        self.gamma_star_, self.delta_star_ = np.vstack(gammas), np.vstack(deltas)
        return self

    def transform(self, X):
        F, batch = self._split(X)
        unseen = np.setdiff1d(np.unique(batch), self.batches_)
        if len(unseen) and self.unseen == "identity":
            out = F.copy()
            seen = np.isin(batch, self.batches_)
            if seen.any():
                out[seen] = self.transform(X[seen])
            return out
        if len(unseen):
            raise BenchmarkError(f"ComBat: batch code(s) {unseen.tolist()} were not in the training rows, so their site effect "
                                 "cannot be estimated -> every site of the validation cohort must also be in the development cohort")
        out = F.copy()
        i = np.searchsorted(self.batches_, batch)
        sd = np.sqrt(self.var_pooled_)
        Z = (F[:, self.columns_] - self.alpha_) / sd
        out[:, self.columns_] = sd * (Z - self.gamma_star_[i]) / np.sqrt(self.delta_star_[i]) + self.alpha_
        return out

    def get_feature_names_out(self, input_features=None):
        """The input names without the final batch column."""
        if input_features is None:
            return np.asarray([f"x{j}" for j in range(self.n_features_in_ - 1)], dtype=object)
        return np.asarray(list(input_features)[:-1], dtype=object)


def with_batch(X: np.ndarray, forced: np.ndarray, codes: np.ndarray, column_filter=None):
    """Append the batch code as the last column, extend ``forced`` (False) and a column filter (keeps it)."""
    X2 = np.column_stack([np.asarray(X, dtype=float), np.asarray(codes, dtype=float)])
    forced2 = np.r_[np.asarray(forced, dtype=bool), False]
    if column_filter is None:
        return X2, forced2, None

    def filt(train_idx):
        return np.r_[np.asarray(column_filter(train_idx), dtype=bool), True]

    return X2, forced2, filt
