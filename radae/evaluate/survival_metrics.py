"""Survival metrics (``risk``: higher means earlier event), pure numpy on 1-D arrays.

- :func:`harrell_c`, :func:`uno_c` (IPCW, Uno et al. 2011), :func:`cumulative_dynamic_auc` (Uno 2007 /
  Hung & Chiang 2010), :func:`brier_scores` / :func:`integrated_brier_score` (Graf et al. 1999).
  Censoring weights come from the Kaplan-Meier estimate of the *training* censoring distribution
  (:func:`censoring_survival`). Pair/tie conventions follow scikit-survival so results can be compared.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

TIED_TOL = 1e-8  # risk scores closer than this count as tied (as in scikit-survival)


def kaplan_meier(time: np.ndarray, event: np.ndarray, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate at the unique observed times: (times, S(t) right after each time).

    ``reverse=True`` estimates the censoring distribution G: censorings are the "events", and
    subjects with an event at t are taken out of the risk set before censorings at t (events first).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    uniq, inv = np.unique(time, return_inverse=True)
    n_event = np.bincount(inv, weights=event.astype(float), minlength=len(uniq))
    n_total = np.bincount(inv, minlength=len(uniq)).astype(float)
    at_risk = n_total[::-1].cumsum()[::-1]
    if reverse:
        d = n_total - n_event
        at_risk = at_risk - n_event
    else:
        d = n_event
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d > 0, d / at_risk, 0.0)
    return uniq, np.cumprod(1.0 - ratio)


def step_values_at(knots: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Right-continuous step function: value at the last knot <= t, 1 before the first knot."""
    idx = np.searchsorted(knots, np.asarray(t, dtype=float), side="right") - 1
    out = np.ones(np.shape(t), dtype=float)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def censoring_survival(train_time: np.ndarray, train_event: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """G(t) = P(C > t), the Kaplan-Meier estimate of the censoring distribution on training data."""
    event = np.asarray(train_event).astype(bool)
    if event.all():
        return lambda t: np.ones(np.shape(t), dtype=float)
    knots, values = kaplan_meier(train_time, event, reverse=True)
    return lambda t: step_values_at(knots, values, t)


def _weighted_concordance(time, event, risk, weights, tied_tol: float = TIED_TOL, chunk: int = 512) -> float:
    """sum_i w_i [#concordant + 0.5 #tied-risk] / sum_i w_i #comparable, over events i.

    (i, j) is comparable when i has an event and T_j > T_i, or T_j == T_i and j is censored.
    Concordant: risk_i > risk_j. O(n^2) memory in chunks of ``chunk`` rows.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    weights = np.asarray(weights, dtype=float)
    idx = np.flatnonzero(event & (weights > 0))
    num = den = 0.0
    for start in range(0, len(idx), chunk):
        i = idx[start : start + chunk]
        ti = time[i][:, None]
        comp = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
        diff = risk[i][:, None] - risk[None, :]
        tie = np.abs(diff) <= tied_tol
        conc = (diff > 0) & ~tie
        w = weights[i]
        num += float(w @ (conc & comp).sum(axis=1) + 0.5 * (w @ (tie & comp).sum(axis=1)))
        den += float(w @ comp.sum(axis=1))
    return num / den if den > 0 else float("nan")


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index: P(risk_i > risk_j | T_i < T_j, i had the event); ties in risk = 1/2."""
    return _weighted_concordance(time, event, risk, np.ones(len(np.asarray(time))))


def uno_c(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    train_time: np.ndarray,
    train_event: np.ndarray,
    tau: float | None = None,
) -> float:
    """Uno's IPCW concordance: Harrell's pairs weighted by 1 / G(T_i)^2, events restricted to T_i < tau.

    Consistent for the population concordance on [0, tau] whatever the censoring (if independent of
    covariates). Events with G(T_i) = 0 (beyond the training censoring support) are dropped.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    g = censoring_survival(train_time, train_event)(time)
    with np.errstate(divide="ignore"):
        w = np.where(event & (g > 0), 1.0 / np.square(np.where(g > 0, g, 1.0)), 0.0)
    if tau is not None:
        w = np.where(time < tau, w, 0.0)
    return _weighted_concordance(time, event, risk, w)


def cumulative_dynamic_auc(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    train_time: np.ndarray,
    train_event: np.ndarray,
    horizons: Sequence[float],
) -> np.ndarray:
    """Cumulative/dynamic AUC(t) at each horizon t (IPCW, Uno 2007).

    Cases: T_i <= t with an event, weighted 1 / G(T_i); controls: T_j > t (equal weights).
    AUC(t) = sum_ij w_i [I(r_i > r_j) + 0.5 I(r_i = r_j)] / (sum_i w_i * #controls); NaN when a
    horizon has no case or no control in these data.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    g = censoring_survival(train_time, train_event)(time)
    out = np.full(len(horizons), np.nan)
    for k, t in enumerate(horizons):
        case = (time <= t) & event & (g > 0)
        ctrl = time > t
        if not case.any() or not ctrl.any():
            continue
        w = 1.0 / g[case]
        diff = risk[case][:, None] - risk[ctrl][None, :]
        tie = np.abs(diff) <= TIED_TOL
        score = ((diff > 0) & ~tie).sum(axis=1) + 0.5 * tie.sum(axis=1)
        out[k] = float(w @ score / (w.sum() * ctrl.sum()))
    return out


def brier_scores(
    time: np.ndarray,
    event: np.ndarray,
    surv_prob: np.ndarray,
    times: Sequence[float],
    train_time: np.ndarray,
    train_event: np.ndarray,
) -> np.ndarray:
    """IPCW Brier score BS(t) at each of ``times`` (Graf et al. 1999).

    ``surv_prob``: (n, len(times)) predicted S(t | x_i). BS(t) = mean_i [ S_i(t)^2 I(T_i <= t, d_i = 1)
    / G(T_i) + (1 - S_i(t))^2 I(T_i > t) / G(t) ]; terms with G = 0 contribute 0.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    surv_prob = np.asarray(surv_prob, dtype=float)
    times = np.asarray(times, dtype=float)
    g_fn = censoring_survival(train_time, train_event)
    g_obs = g_fn(time)
    g_t = g_fn(times)
    out = np.empty(len(times))
    for k, t in enumerate(times):
        s = surv_prob[:, k]
        case = (time <= t) & event
        ctrl = time > t
        term_case = np.where(case & (g_obs > 0), s**2 / np.where(g_obs > 0, g_obs, 1.0), 0.0)
        term_ctrl = np.where(ctrl, (1.0 - s) ** 2 / g_t[k], 0.0) if g_t[k] > 0 else np.zeros_like(s)
        out[k] = float(np.mean(term_case + term_ctrl))
    return out


def integrated_brier_score(
    time: np.ndarray,
    event: np.ndarray,
    surv_prob: np.ndarray,
    times: Sequence[float],
    train_time: np.ndarray,
    train_event: np.ndarray,
) -> float:
    """IBS = trapezoid integral of BS(t) over ``times`` divided by (times[-1] - times[0])."""
    times = np.asarray(times, dtype=float)
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    bs = brier_scores(time, event, surv_prob, times, train_time, train_event)
    return float(np.trapezoid(bs, times) / (times[-1] - times[0]))

