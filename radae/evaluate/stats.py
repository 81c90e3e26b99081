"""Statistics for the benchmark: discrimination, calibration, paired tests, intervals, multiplicity.

Pure numpy/scipy functions on 1-D arrays; no fitting of predictive models happens here.

Classification
- :func:`auc_score` - Mann-Whitney AUC, ``P(s+ > s-) + 0.5 P(s+ = s-)``.
- :func:`delong_covariance`, :func:`delong_test`, :func:`delong_ci` - DeLong et al. (1988) variance of
  correlated AUCs through structural components, computed with the midrank algorithm of Sun & Xu (2014).
- :func:`calibration_slope_intercept` - logistic recalibration (Cox 1958; Van Calster 2019).

Survival (``risk``: higher means earlier event)
- :func:`harrell_c`, :func:`uno_c` (IPCW, Uno et al. 2011), :func:`cumulative_dynamic_auc` (Uno 2007 /
  Hung & Chiang 2010), :func:`brier_scores` / :func:`integrated_brier_score` (Graf et al. 1999).
  Censoring weights come from the Kaplan-Meier estimate of the *training* censoring distribution
  (:func:`censoring_survival`). Pair/tie conventions follow scikit-survival so results can be compared.

Resampling and multiplicity
- :func:`corrected_resampled_ttest` - Nadeau & Bengio (2003) variance correction for repeated K-fold CV.
- :func:`bootstrap_ci` - percentile bootstrap that resamples clusters (patients), not rows.
- :func:`adjust_pvalues` - Holm (FWER) and Benjamini-Hochberg (FDR).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import stats as sps
from scipy.special import expit

logger = logging.getLogger(__name__)

TIED_TOL = 1e-8  # risk scores closer than this count as tied (as in scikit-survival)


# ----------------------------------------------------------------------------- AUC and DeLong
def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC of ``score`` for binary ``y`` (1 = positive); NaN if one class is absent.

    AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), R+ the sum of midranks of the positives.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = sps.rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``k`` score vectors on the same cases.

    ``scores``: (k, n). With X the positives (m) and Y the negatives (n), the structural components are
    V10(X_i) = mean_j psi(X_i, Y_j) and V01(Y_j) = mean_i psi(X_i, Y_j) with psi = 1 if X > Y, 1/2 if
    equal, else 0. Cov(AUC) = S10 / m + S01 / n (S: sample covariances of the components). The
    components are computed from midranks: V10_i = (rank of X_i among all - rank among X) / n.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    tx = sps.rankdata(pos, axis=1)
    ty = sps.rankdata(neg, axis=1)
    tz = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    diff: float  # auc_a - auc_b
    se: float
    z: float
    p_value: float  # two-sided


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """Two-sided DeLong test of AUC(a) = AUC(b) for two correlated score vectors on the same cases."""
    aucs, cov = delong_covariance(y, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 0.0:
        # identical rankings: no evidence of a difference
        return DeLongResult(float(aucs[0]), float(aucs[1]), diff, 0.0, 0.0 if diff == 0 else float("inf"), 1.0 if diff == 0 else 0.0)
    se = float(np.sqrt(var))
    z = diff / se
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, z, float(2.0 * sps.norm.sf(abs(z))))


def delong_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC with a Wald interval from the DeLong variance, clipped to [0, 1]."""
    aucs, cov = delong_covariance(y, score[None, :])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    q = sps.norm.ppf(0.5 + level / 2.0)
    a = float(aucs[0])
    return a, max(0.0, a - q * se), min(1.0, a + q * se)


# ----------------------------------------------------------------------------- calibration
def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def calibration_slope_intercept(y: np.ndarray, prob: np.ndarray, max_iter: int = 50) -> tuple[float, float]:
    """Calibration slope and intercept (calibration-in-the-large) of predicted probabilities.

    slope b: from logit P(y=1) = a + b * logit(p) (ideal 1; < 1 means predictions too extreme).
    intercept a: from logit P(y=1) = a + 1 * logit(p), i.e. logit(p) as an offset (ideal 0; > 0 means
    risks are underestimated on average). Both by Newton-Raphson on the binomial likelihood.
    Returns NaN for a quantity that does not converge (e.g. perfectly separated folds) or one class.
    """
    y = np.asarray(y, dtype=float)
    if y.min() == y.max():
        return float("nan"), float("nan")
    lp = logit(prob)
    # slope: two-parameter fit
    X = np.column_stack([np.ones_like(lp), lp])
    beta = np.zeros(2)
    slope = float("nan")
    for _ in range(max_iter):
        mu = expit(X @ beta)
        w = mu * (1.0 - mu)
        hess = X.T @ (X * w[:, None])
        grad = X.T @ (y - mu)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if not np.all(np.isfinite(beta)) or abs(beta[1]) > 1e3:
            break
        if np.max(np.abs(step)) < 1e-10:
            slope = float(beta[1])
            break
    # intercept with the linear predictor as offset
    a = 0.0
    intercept = float("nan")
    for _ in range(max_iter):
        mu = expit(a + lp)
        w = float(np.sum(mu * (1.0 - mu)))
        if w <= 0:
            break
        step = float(np.sum(y - mu)) / w
        a += step
        if not np.isfinite(a) or abs(a) > 1e3:
            break
        if abs(step) < 1e-10:
            intercept = a
            break
    return slope, intercept


def brier_score(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean squared difference between predicted probability and the 0/1 outcome."""
    return float(np.mean((np.asarray(prob, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def balanced_accuracy(y: np.ndarray, prob: np.ndarray, threshold: float) -> float:
    """Mean of sensitivity and specificity of ``prob >= threshold``; NaN if a class is absent."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob, dtype=float) >= threshold
    if y.all() or (~y).all():
        return float("nan")
    return float(0.5 * (pred[y].mean() + (~pred[~y]).mean()))


# ----------------------------------------------------------------------------- survival metrics
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


def _step_eval(knots: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
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
    return lambda t: _step_eval(knots, values, t)


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


# ----------------------------------------------------------------------------- resampling statistics
@dataclass(frozen=True)
class TTestResult:
    mean: float
    se: float
    t: float
    df: int
    p_value: float
    ci_low: float
    ci_high: float


def corrected_resampled_ttest(
    values: Sequence[float], n_train: float, n_test: float, level: float = 0.95
) -> TTestResult:
    """Nadeau-Bengio corrected resampled t-test (and interval) for the mean of per-fold values.

    For J = repeats x folds values d_j (e.g. paired metric differences), the naive variance s^2 / J
    ignores that training sets overlap; the corrected variance is (1/J + n_test/n_train) s^2.
    t = mean / sqrt(corrected variance), df = J - 1; two-sided p-value against mean = 0.
    Non-finite values (e.g. folds where a metric is undefined) are dropped.
    """
    d = np.asarray(values, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2:
        return TTestResult(float(d.mean()) if j else float("nan"), float("nan"), float("nan"), max(j - 1, 0), float("nan"), float("nan"), float("nan"))
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = float(np.sqrt((1.0 / j + n_test / n_train) * var))
    df = j - 1
    q = float(sps.t.ppf(0.5 + level / 2.0, df))
    if se == 0.0:
        return TTestResult(mean, 0.0, float("nan") if mean == 0 else float(np.sign(mean) * np.inf), df, 1.0 if mean == 0 else 0.0, mean, mean)
    t = mean / se
    return TTestResult(mean, se, t, df, float(2.0 * sps.t.sf(abs(t), df)), mean - q * se, mean + q * se)


@dataclass(frozen=True)
class BootstrapResult:
    estimate: float
    ci_low: float
    ci_high: float
    n_valid: int  # resamples where the statistic was defined


def bootstrap_ci(
    statistic: Callable[..., float],
    arrays: Sequence[np.ndarray],
    groups: np.ndarray | None,
    n_boot: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling whole clusters.

    ``groups`` (e.g. patient ids) are drawn with replacement and all their rows come along, so
    lesions of one patient stay together. Resamples where the statistic is NaN (a class missing)
    are dropped and counted out of ``n_valid``.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    est = float(statistic(*arrays))
    if n_boot <= 0:
        return BootstrapResult(est, float("nan"), float("nan"), 0)
    if groups is None:
        groups = np.arange(n)
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inv))]
    members = [order[bounds[g] : bounds[g + 1]] for g in range(len(bounds) - 1)]
    n_groups = len(members)
    values = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, n_groups, size=n_groups)
        idx = np.concatenate([members[g] for g in pick])
        values[b] = statistic(*[a[idx] for a in arrays])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return BootstrapResult(est, float("nan"), float("nan"), 0)
    lo, hi = np.quantile(values, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return BootstrapResult(est, float(lo), float(hi), int(len(values)))


# ----------------------------------------------------------------------------- multiplicity
def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (controls the family-wise error rate). NaNs stay NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate). NaNs stay NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    raw = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(raw[::-1])[::-1]
    out[order] = np.minimum(adj, 1.0)
    return out


def adjust_pvalues(p_values: Sequence[float], method: Literal["holm", "bh"]) -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown p-value adjustment {method!r}; use 'holm' or 'bh'")
