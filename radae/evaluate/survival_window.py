"""Survival evaluation settings chosen without the test folds, and the KM-weighted mean of td-AUC.

The td-AUC horizons, Uno's tau (the last horizon) and the integrated-Brier window are fixed once per task and
are the same for every fold, so fold values average one quantity. They come from the configuration, or from
the *training* folds' event times only (outcomes, never features): each outer training fold proposes its
quartiles of event times (horizons) and its 10th-90th percentile window (IBS); the horizons are the per-quantile
medians of the proposals and the window is the intersection of all proposed windows (the part every training
fold agrees on). A fold whose test follow-up ends before the window does gets IBS = NaN, counted as undefined.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from radae.evaluate.survival_metrics import kaplan_meier, step_values_at

IBS_GRID = 50  # points of the IBS time grid


@dataclass(frozen=True)
class SurvivalEval:
    """Evaluation settings fixed once per task: td-AUC horizons, Uno tau, IBS time grid."""

    horizons: tuple[float, ...]
    ibs_times: np.ndarray = field(default_factory=lambda: np.zeros(0))


def training_event_times(y, splits) -> list[np.ndarray]:
    """Event times of every outer training fold (repeat 0's folds cover each patient once as test)."""
    out = []
    for s in splits:
        tr = s.train
        t = np.asarray(y["time"])[tr][np.asarray(y["event"])[tr].astype(bool)]
        if len(t):
            out.append(t)
    return out


def choose_settings(y, splits, horizons: Sequence[float] = (), ibs_window: Sequence[float] | None = None) -> SurvivalEval:
    """(horizons, ibs_times): configured values, or derived from training-fold event times only."""
    per_fold = training_event_times(y, splits)
    if horizons:
        hz = tuple(float(h) for h in horizons)
    elif per_fold:
        hz = tuple(float(h) for h in np.median([np.quantile(t, [0.25, 0.5, 0.75]) for t in per_fold], axis=0))
    else:
        hz = ()
    if ibs_window is not None:
        lo, hi = float(ibs_window[0]), float(ibs_window[1])
    elif per_fold:
        win = np.array([np.quantile(t, [0.1, 0.9]) for t in per_fold])
        lo, hi = float(win[:, 0].max()), float(win[:, 1].min())
    else:
        lo = hi = 0.0
    return SurvivalEval(hz, np.linspace(lo, hi, IBS_GRID) if hi > lo else np.zeros(0))


def ibs_times_for_fold(ibs_times: np.ndarray, test_time: np.ndarray) -> np.ndarray:
    """The fixed IBS grid if the test fold's follow-up covers it (last grid time < last test time), else empty."""
    if len(ibs_times) < 2 or not len(test_time) or ibs_times[-1] >= float(np.max(test_time)):
        return np.zeros(0)
    return ibs_times


def mean_td_auc(aucs: np.ndarray, horizons: Sequence[float], time: np.ndarray, event: np.ndarray) -> float:
    """Mean of AUC(t) weighted by the drop of the Kaplan-Meier S(t) of the test data, as scikit-survival's
    ``cumulative_dynamic_auc``: sum_k AUC(t_k) (S(t_{k-1}) - S(t_k)) / (1 - S(t_last)), S(t_0) = 1.

    Horizons where AUC(t) is undefined (NaN) are left out and the weights renormalised over the rest; one
    horizon: its AUC. NaN if none is defined or the survival curve does not drop over the horizons.
    """
    aucs = np.asarray(aucs, dtype=float)
    h = np.asarray(horizons, dtype=float)
    ok = np.isfinite(aucs)
    if not ok.any():
        return float("nan")
    if len(aucs) == 1:
        return float(aucs[0])
    knots, surv = kaplan_meier(time, event)
    s = step_values_at(knots, surv, h)
    d = -np.diff(np.r_[1.0, s])
    w = d[ok]
    if not w.sum() > 0:
        return float("nan")
    return float((aucs[ok] * w).sum() / w.sum())
