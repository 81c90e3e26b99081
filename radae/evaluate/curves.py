"""ROC points and calibration bins of the pooled out-of-fold predictions (``benchmark/roc_points.parquet``,
``benchmark/calibration_bins.parquet``), so the report draws what the benchmark computed.

For every classification feature set and model, on the first repeat (``repeat == min``) of the non-control rows of
``predictions.parquet``: rows with a finite label and score; the ROC curve (``sklearn.metrics.roc_curve``, one row per
threshold point) with the AUC of these rows; and calibration in ``n_bins = max(3, min(10, n // 10))`` quantile bins
of the predicted probability (duplicate edges merged), each non-empty bin with its mean prediction, observed
fraction of positives and row count. A set x model whose rows hold a single class has no curve.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from radae.evaluate.stats import auc_score

ROC_COLUMNS = ["task", "feature_set", "model", "repeat", "n", "auc", "point", "fpr", "tpr"]
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
    n_bins = int(max(3, min(10, len(y) // 10)))
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    bins = np.array([b for b in range(len(edges) - 1) if (idx == b).any()], dtype=int)
    pred = np.array([s[idx == b].mean() for b in range(len(edges) - 1) if (idx == b).any()])
    obs = np.array([y[idx == b].mean() for b in range(len(edges) - 1) if (idx == b).any()])
    cnt = np.array([(idx == b).sum() for b in range(len(edges) - 1) if (idx == b).any()])
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
