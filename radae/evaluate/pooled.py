"""Pooled out-of-fold quantities with the right unit: training-fold thresholds, and patients (not lesions) in KM.

- :func:`balanced_accuracy_training_prevalence` - each fold's probabilities thresholded at the prevalence of
  *its* training rows (never the whole cohort's), then one balanced accuracy over the pooled test rows.
- :func:`patient_level` - lesions of one patient share time and event; Kaplan-Meier curves, numbers at risk and
  the log-rank test count each patient once, in the group most of its lesions fall in (ties: "high").
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from radae.evaluate.probability_metrics import balanced_accuracy


def balanced_accuracy_training_prevalence(y: np.ndarray, fold_results: list) -> float:
    """Balanced accuracy of pooled test predictions, fold k thresholded at fold k's training prevalence.

    Folds of one repeat partition the rows, so a fold's training prevalence is (sum y - sum y_test) / (n - n_test).
    """
    y = np.asarray(y)
    n, total = len(y), float(np.sum(y))
    yy, above = [], []
    for r in fold_results:
        te = r.test_index
        n_tr = n - len(te)
        thr = (total - float(np.sum(y[te]))) / n_tr if n_tr > 0 else 0.5
        yy.append(y[te])
        above.append(np.asarray(r.score, dtype=float) >= thr)
    return balanced_accuracy(np.concatenate(yy), np.concatenate(above).astype(float), 0.5)


def patient_level(time: np.ndarray, event: np.ndarray, group: np.ndarray, patients: np.ndarray | None):
    """(time, event, group) with one entry per patient; unchanged when ``patients`` is None or unique."""
    if patients is None or len(pd.unique(patients)) == len(patients):
        return time, event, group
    f = pd.DataFrame({"p": patients, "t": np.asarray(time, dtype=float), "e": np.asarray(event).astype(int),
                      "high": (np.asarray(group).astype(str) == "high").astype(float)})
    g = f.groupby("p", sort=True).agg(t=("t", "first"), e=("e", "first"), high=("high", "mean"))
    return g["t"].to_numpy(), g["e"].to_numpy(), np.where(g["high"] >= 0.5, "high", "low").astype(object)
