"""Calibration and decision curves of a survival model at one horizon t, on a validation cohort.

A survival model's predicted risk at t is ``1 - S(t | x)``. Observed risks come from Kaplan-Meier estimates
(:func:`radae.evaluate.survival_metrics.kaplan_meier`), so censored patients count as they should:

- calibration: patients binned by deciles of predicted risk; per bin the mean predicted risk and the observed
  ``1 - KM(t)`` of the bin (NaN when the bin's follow-up ends before t);
- decision curve (Vickers et al. 2008, as the ``dcurves`` package computes it): at threshold p_t the patients with
  predicted risk >= p_t are treated; with r the KM risk at t among them and q their fraction,
  ``NB = r q - (1 - r) q p_t / (1 - p_t)``; treat-all uses every patient, treat-none is 0.

:func:`horizon` picks t from the development cohort only: the last configured horizon, else the median of the
development event times.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from radae.evaluate.decision import THRESHOLDS
from radae.evaluate.probability_metrics import quantile_bins
from radae.evaluate.survival_metrics import kaplan_meier, step_values_at


def horizon(y_dev, horizons: Sequence[float] = ()) -> float:
    """The evaluation horizon: the last of ``horizons``, else the median event time of the development cohort."""
    if horizons:
        return float(horizons[-1])
    t = np.asarray(y_dev["time"], dtype=float)[np.asarray(y_dev["event"]).astype(bool)]
    return float(np.median(t)) if len(t) else float("nan")


def km_risk(time: np.ndarray, event: np.ndarray, t: float) -> float:
    """``1 - KM(t)``; NaN when no one is followed up to t (or the set is empty)."""
    time = np.asarray(time, dtype=float)
    if not len(time) or not np.isfinite(t) or time.max() < t:
        return float("nan")
    knots, surv = kaplan_meier(time, event)
    return float(1.0 - step_values_at(knots, surv, np.array([t]))[0])


def calibration_table(time: np.ndarray, event: np.ndarray, risk_t: np.ndarray, t: float, bins: int = 10) -> pd.DataFrame:
    """bin, n, predicted (mean risk at t), observed (KM risk at t) per quantile bin of predicted risk."""
    risk_t = np.asarray(risk_t, dtype=float)
    time, event = np.asarray(time, dtype=float), np.asarray(event).astype(bool)
    idx = quantile_bins(risk_t, max(1, min(bins, len(risk_t) // 5)))  # at least ~5 patients a bin
    rows = [{"bin": int(b), "n": int((idx == b).sum()), "predicted": float(risk_t[idx == b].mean()),
             "observed": km_risk(time[idx == b], event[idx == b], t)} for b in np.unique(idx)]
    return pd.DataFrame(rows)


def net_benefit_table(time: np.ndarray, event: np.ndarray, risk_t: np.ndarray, t: float,
                      thresholds: np.ndarray = THRESHOLDS) -> pd.DataFrame:
    """Long table: threshold, strategy ("model" | "all" | "none"), net_benefit (NaN where KM does not reach t)."""
    time, event = np.asarray(time, dtype=float), np.asarray(event).astype(bool)
    risk_t = np.asarray(risk_t, dtype=float)
    th = np.asarray(thresholds, dtype=float)
    odds = th / (1.0 - th)

    def nb(treated: np.ndarray, pt_odds: float) -> float:
        q = float(treated.mean())
        if q == 0:
            return 0.0
        r = km_risk(time[treated], event[treated], t)
        return r * q - (1.0 - r) * q * pt_odds

    everyone = np.ones(len(time), dtype=bool)
    model = [nb(risk_t >= p, o) for p, o in zip(th, odds)]
    treat_all = [nb(everyone, o) for o in odds]
    if not len(time) or time.max() < t:  # no follow-up reaches t: nothing is estimable
        model = treat_all = [float("nan")] * len(th)
    return pd.concat([pd.DataFrame({"threshold": th, "strategy": s, "net_benefit": v})
                      for s, v in (("model", model), ("all", treat_all), ("none", np.zeros(len(th))))], ignore_index=True)
