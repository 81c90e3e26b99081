"""ROC points and calibration bins of the pooled out-of-fold predictions (``benchmark/roc_points.parquet``,
``benchmark/calibration_bins.parquet``), so the report draws what the benchmark computed.

For every classification feature set and model, on the first repeat (``repeat == min``) of the non-control rows of
``predictions.parquet``: rows with a finite label and score; the ROC curve (``sklearn.metrics.roc_curve``, one row per
threshold point) with the AUC of these rows; and calibration in ``n_bins = max(3, min(10, n // 10))`` quantile bins
of the predicted probability (duplicate edges merged), each non-empty bin with its mean prediction, observed
fraction of positives and row count. A set x model whose rows hold a single class has no curve.

ROC bands (``benchmark/roc_bands.parquet``, :func:`roc_bands`): for the primary comparison's sets (every model; all
sets when the run has no primary pair, as the report shows them), the same rows resampled by *patient* (all rows of a
patient together, since lesions of one patient are correlated) ``benchmark.bootstrap`` times. Vertical averaging: the
step-function ROC of each resample, TPR(f) = max{TPR_t : FPR_t <= f} over its thresholds t, is read at the fixed grid
:data:`FPR_GRID` (101 points, 0..1); the band is the pointwise 2.5 / 97.5 % percentile of these TPRs. Resamples with
one class only are dropped; ``n_boot`` counts those kept. Each bootstrap curve is non-decreasing in f, so both
percentiles are too. The draws come from ``SeedSequence([seed, cv_seed, ROC_BAND_STREAM])``, re-seeded for every set x
model: sets with the same patients get the same resamples (paired bands), and no other random stream moves.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from radae.evaluate.probability_metrics import quantile_bins
from radae.evaluate.stats import auc_score

ROC_COLUMNS = ["task", "feature_set", "model", "repeat", "n", "auc", "point", "fpr", "tpr"]
BAND_COLUMNS = ["task", "feature_set", "model", "repeat", "fpr", "tpr", "tpr_lower", "tpr_upper", "n_boot"]
FPR_GRID = np.linspace(0.0, 1.0, 101)
ROC_BAND_STREAM = 31  # patient bootstrap of the ROC bands (tasks uses 7, 11, 17, 23; external 37; label efficiency 41)
_GRID_TOL = 1e-12  # an FPR equal to a grid point up to rounding counts as reached there
CALIBRATION_COLUMNS = ["task", "feature_set", "model", "repeat", "bin", "mean_predicted", "observed", "count"]


def first_repeat(preds: pd.DataFrame) -> pd.DataFrame:
    """The classification, non-control rows of the first repeat of a predictions table."""
    return preds[(preds["task"] == "classification") & (~preds["control"].astype(bool)) & (preds["repeat"] == preds["repeat"].min())]


def roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false-positive rates, true-positive rates, AUC) of scores ``s`` for 0/1 labels ``y``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, auc_score(y, s)


def calibration_bins(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bin index, mean prediction, observed fraction, count) of the non-empty quantile bins of ``s``."""
    idx = quantile_bins(s, int(max(3, min(10, len(y) // 10))))
    bins = np.unique(idx).astype(int)
    pred = np.array([s[idx == b].mean() for b in bins])
    obs = np.array([y[idx == b].mean() for b in bins])
    cnt = np.array([(idx == b).sum() for b in bins])
    return bins, pred, obs, cnt


def curve_tables(preds: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ROC points, calibration bins) of every classification feature set x model (columns :data:`ROC_COLUMNS`,
    :data:`CALIBRATION_COLUMNS`); empty tables with these columns when there is none."""
    p = first_repeat(preds) if len(preds) else None
    rocs, cals = [], []
    for (fset, model), g in ([] if p is None else p.groupby(["feature_set", "model"], sort=False)):
        y, s = g["label"].to_numpy(float), g["score"].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(s)
        y, s = y[ok], s[ok]
        if len(np.unique(y)) < 2:
            continue
        keys = {"task": "classification", "feature_set": fset, "model": model, "repeat": int(g["repeat"].iloc[0])}
        fpr, tpr, auc = roc_points(y, s)
        rocs.append(pd.DataFrame({**keys, "n": len(y), "auc": auc, "point": np.arange(len(fpr)), "fpr": fpr, "tpr": tpr}))
        bins, pred, obs, cnt = calibration_bins(y, s)
        cals.append(pd.DataFrame({**keys, "bin": bins, "mean_predicted": pred, "observed": obs, "count": cnt}))
    roc = pd.concat(rocs, ignore_index=True) if rocs else pd.DataFrame(columns=ROC_COLUMNS)
    cal = pd.concat(cals, ignore_index=True) if cals else pd.DataFrame(columns=CALIBRATION_COLUMNS)
    return roc[ROC_COLUMNS], cal[CALIBRATION_COLUMNS]


def step_tpr(y: np.ndarray, s: np.ndarray, grid: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """TPR of the step-function ROC of scores ``s`` (0/1 labels ``y``) at each FPR of ``grid``: the largest TPR over
    thresholds whose FPR <= f. ``weight`` counts each row that many times (a bootstrap resample is a weight vector of
    multiplicities, equal to ``sklearn.metrics.roc_curve`` on the repeated rows); NaN everywhere with one class."""
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    order = np.argsort(-s, kind="stable")
    y, s, w = y[order], s[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each block of tied scores
    tps = np.r_[0.0, np.cumsum(w * y)[last]]
    fps = np.r_[0.0, np.cumsum(w * (1.0 - y))[last]]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return np.full(len(grid), np.nan)
    idx = np.searchsorted(fps / fps[-1], np.asarray(grid) + _GRID_TOL, side="right") - 1
    return (tps / tps[-1])[idx]


def patient_band(y: np.ndarray, s: np.ndarray, patients: np.ndarray, n_boot: int, rng: np.random.Generator,
                 grid: np.ndarray = FPR_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(full-sample TPR, 2.5 % TPR, 97.5 % TPR at ``grid``, resamples kept): patients drawn with replacement,
    every row of a drawn patient along with it (:func:`step_tpr` with the multiplicities as weights)."""
    _, inv = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    n_groups = int(inv.max()) + 1
    draws = rng.integers(0, n_groups, size=(max(n_boot, 0), n_groups))
    curves = np.array([step_tpr(y, s, grid, np.bincount(d, minlength=n_groups)[inv]) for d in draws]).reshape(-1, len(grid))
    curves = curves[np.isfinite(curves).all(axis=1)]
    full = step_tpr(y, s, grid)
    if not len(curves):
        return full, np.full(len(grid), np.nan), np.full(len(grid), np.nan), 0
    lo, hi = np.quantile(curves, [0.025, 0.975], axis=0)
    return full, lo, hi, len(curves)


def primary_sets(comparisons: pd.DataFrame, task: str = "classification") -> list[str]:
    """The feature sets of a task's primary pairs in ``comparisons.csv`` order (set_a, set_b, ...); [] when none."""
    if not len(comparisons):
        return []
    p = comparisons[(comparisons["task"] == task) & (comparisons["role"] == "primary")]
    return list(dict.fromkeys(x for a, b in zip(p["set_a"], p["set_b"]) for x in (a, b)))


def roc_bands(preds: pd.DataFrame, sets: list[str], n_boot: int, seed: int, cv_seed: int) -> pd.DataFrame:
    """Pointwise 95 % patient-bootstrap ROC bands (columns :data:`BAND_COLUMNS`, one row per grid FPR) of the first
    repeat's pooled out-of-fold predictions of every model of ``sets`` (all sets when empty); ``tpr`` is the
    full-sample step-function ROC at the grid. Empty with these columns when ``n_boot`` is 0 or nothing qualifies."""
    out = []
    p = first_repeat(preds) if len(preds) and n_boot > 0 else None
    for (fset, model), g in ([] if p is None else p.groupby(["feature_set", "model"], sort=False)):
        if sets and fset not in sets:
            continue
        y, s = g["label"].to_numpy(float), g["score"].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(s)
        if len(np.unique(y[ok])) < 2:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(cv_seed), ROC_BAND_STREAM]))
        full, lo, hi, kept = patient_band(y[ok], s[ok], g["patient_id"].to_numpy()[ok], n_boot, rng)
        out.append(pd.DataFrame({"task": "classification", "feature_set": fset, "model": model, "repeat": int(g["repeat"].iloc[0]),
                                 "fpr": FPR_GRID, "tpr": full, "tpr_lower": lo, "tpr_upper": hi, "n_boot": kept}))
    return pd.concat(out, ignore_index=True)[BAND_COLUMNS] if out else pd.DataFrame(columns=BAND_COLUMNS)
