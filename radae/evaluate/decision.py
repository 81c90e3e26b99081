"""Decision-curve analysis (Vickers & Elkin 2006).

At a threshold probability p_t a patient is treated when the predicted risk >= p_t. Net benefit counts
true positives and penalises false positives by the odds of the threshold:

    NB(p_t) = TP / n - FP / n * p_t / (1 - p_t)

"Treat all" has NB = prevalence - (1 - prevalence) * p_t / (1 - p_t); "treat none" has NB = 0. A model is
useful at p_t where its curve lies above both. Same definition as the ``dcurves`` package (checked in the
tests).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def net_benefit(y: np.ndarray, prob: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Net benefit of treating ``prob >= t`` for each threshold t (y: 0/1)."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=float)
    n = len(y)
    t = np.asarray(thresholds, dtype=float)
    treat = prob[None, :] >= t[:, None]
    tp = (treat & (y[None, :] == 1)).sum(axis=1)
    fp = (treat & (y[None, :] == 0)).sum(axis=1)
    return tp / n - fp / n * t / (1.0 - t)


def net_benefit_table(y: np.ndarray, prob: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> pd.DataFrame:
    """Long table: threshold, strategy ("model" | "all" | "none"), net_benefit."""
    y = np.asarray(y).astype(int)
    t = np.asarray(thresholds, dtype=float)
    prev = float(np.mean(y))
    frames = [
        pd.DataFrame({"threshold": t, "strategy": "model", "net_benefit": net_benefit(y, prob, t)}),
        pd.DataFrame({"threshold": t, "strategy": "all", "net_benefit": prev - (1 - prev) * t / (1 - t)}),
        pd.DataFrame({"threshold": t, "strategy": "none", "net_benefit": np.zeros(len(t))}),
    ]
    return pd.concat(frames, ignore_index=True)
