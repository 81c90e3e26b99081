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
from radae.evaluate.units import per_patient


def balanced_accuracy_training_prevalence(y: np.ndarray, fold_results: list, groups: np.ndarray | None = None) -> float:
    """Balanced accuracy of pooled test predictions, fold k thresholded at fold k's training prevalence.

    Folds of one repeat partition the rows, so a fold's training rows are the rows outside its test rows. With
    ``groups`` and a patient-level label the unit is the patient: prevalence over training patients, and one mean
    probability per test patient (:mod:`radae.evaluate.units`).
    """
    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    yy, above = [], []
    for r in fold_results:
        te = r.test_index
        train = np.ones(len(y), dtype=bool)
        train[te] = False
        y_tr = per_patient(y[train], groups[train])[0]
        thr = float(np.mean(y_tr)) if len(y_tr) else 0.5
        y_te, _, p_te = per_patient(y[te], groups[te], r.score)
        yy.append(y_te)
        above.append(p_te >= thr)
    return balanced_accuracy(np.concatenate(yy), np.concatenate(above).astype(float), 0.5)


def patient_level(time: np.ndarray, event: np.ndarray, group: np.ndarray, patients: np.ndarray | None):
    """(time, event, group) with one entry per patient; unchanged when ``patients`` is None or unique."""
    if patients is None or len(pd.unique(patients)) == len(patients):
        return time, event, group
    f = pd.DataFrame({"p": patients, "t": np.asarray(time, dtype=float), "e": np.asarray(event).astype(int),
                      "high": (np.asarray(group).astype(str) == "high").astype(float)})
    g = f.groupby("p", sort=True).agg(t=("t", "first"), e=("e", "first"), high=("high", "mean"))
    return g["t"].to_numpy(), g["e"].to_numpy(), np.where(g["high"] >= 0.5, "high", "low").astype(object)
