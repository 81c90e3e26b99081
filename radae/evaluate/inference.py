"""Inference for repeated, grouped K-fold CV: paired tests and intervals whose size holds at small n.

Why not DeLong on averaged out-of-fold scores: those scores come from K x R different fitted models, and
DeLong's variance counts only the sampling of test patients, not the variation of the fitted models, so in
CV it is anti-conservative (type-I error 0.09-0.13 at alpha 0.05 in ``benchmarks/bench_type1.py``).
DeLong stays valid for one locked model on an independent set (external validation).

Inside CV the per-fold values d_j (J = R repeats x K folds; a metric or a paired difference) are used:

- ``nadeau_bengio`` - Nadeau & Bengio (2003): Var(mean d) ~ (1/J + n_test/n_train) s^2, t with J - 1 df.
  Anti-conservative in radae's null simulation (type-I error 0.04 / 0.07 / 0.11 at n = 34 / 60 / 150).
- ``calibrated`` - the same variance with the degrees of freedom calibrated to the K folds of one repeat
  (K - 1 df), as in Bouckaert (2003, "Choosing between two learning algorithms based on calibrated
  tests"): repeats re-use the same patients, so they add far fewer than K x R - 1 degrees of freedom. More
  conservative (0.01 / 0.00 / 0.04); the benchmark's default (``benchmark.interval: calibrated``; ``auto``
  uses it below 100 patients only).

Degenerate folds: when every fold gives the same value (AUC 1.0 everywhere, identical differences) the
t statistic is undefined, not infinite. Such a result is marked ``degenerate`` and the caller replaces
its interval by a patient bootstrap (:func:`bootstrap_difference`); reported p-values are floored at
:data:`P_FLOOR` (``p < 0.0001``), never 1e-140.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import stats as sps

Method = Literal["auto", "nadeau_bengio", "calibrated"]
METHODS = ("nadeau_bengio", "calibrated")
SMALL_N = 100  # below this many patients "auto" means "calibrated"
P_FLOOR = 1e-4  # smallest p-value reported: more digits would claim a precision no CV of this size has


@dataclass(frozen=True)
class CVInference:
    """Mean of per-fold values with its interval and the two-sided test of mean = 0."""

    mean: float
    se: float
    df: int
    stat: float
    p_value: float  # two-sided, floored at P_FLOOR; NaN when undefined
    ci_low: float
    ci_high: float
    method: str  # "nadeau_bengio" | "calibrated"
    n_folds: int  # finite fold values used
    n_undefined: int  # fold values that were NaN (metric undefined in that fold), counted, not hidden
    degenerate: bool  # every finite fold value identical: interval and p need the bootstrap fallback


def resolve_method(method: Method, n_patients: int) -> str:
    """``auto`` -> ``calibrated`` below :data:`SMALL_N` patients, else ``nadeau_bengio``."""
    if method == "auto":
        return "calibrated" if n_patients < SMALL_N else "nadeau_bengio"
    if method not in METHODS:
        raise ValueError(f"unknown CV inference method {method!r}; use auto, nadeau_bengio or calibrated")
    return method


def floor_p(p: float, floor: float = P_FLOOR) -> float:
    """max(p, floor); NaN stays NaN."""
    return float(p) if not np.isfinite(p) else float(max(p, floor))


def cv_ttest(values: Sequence[float], n_train: float, n_test: float, folds: int, method: str = "calibrated",
             level: float = 0.95) -> CVInference:
    """Corrected resampled t-test and interval of the mean of per-fold ``values``.

    Variance (1/J + n_test/n_train) s^2 over the J finite values; df = J - 1 (``nadeau_bengio``) or
    min(J, folds) - 1 (``calibrated``). Non-finite values are counted in ``n_undefined``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown CV inference method {method!r}; use one of {METHODS}")
    d = np.asarray(values, dtype=float)
    n_undef = int((~np.isfinite(d)).sum())
    d = d[np.isfinite(d)]
    j = len(d)
    nan = float("nan")
    if j < 2:
        return CVInference(float(d.mean()) if j else nan, nan, max(j - 1, 0), nan, nan, nan, nan, method, j, n_undef, False)
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = float(np.sqrt((1.0 / j + n_test / n_train) * var))
    df = j - 1 if method == "nadeau_bengio" else max(min(j, int(folds)) - 1, 1)
    if not se > 0.0:
        return CVInference(mean, 0.0, df, nan, nan, mean, mean, method, j, n_undef, True)
    q = float(sps.t.ppf(0.5 + level / 2.0, df))
    t = mean / se
    p = floor_p(float(2.0 * sps.t.sf(abs(t), df)))
    return CVInference(mean, se, df, t, p, mean - q * se, mean + q * se, method, j, n_undef, False)


@dataclass(frozen=True)
class BootstrapDifference:
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float  # two-sided bootstrap p of "no difference", floored at 1 / (n_valid + 1)
    n_valid: int


def bootstrap_difference(statistic: Callable[..., float], arrays: Sequence[np.ndarray], groups: np.ndarray, n_boot: int,
                         rng: np.random.Generator, level: float = 0.95, null: float = 0.0) -> BootstrapDifference:
    """Patient-level percentile bootstrap of ``statistic(*arrays)`` with a two-sided p-value against ``null``.

    p = 2 min(P*(s <= null), P*(s >= null)), at least 1 / (n_valid + 1) (a bootstrap cannot show more).
    Used for degenerate CV results where every fold gave the same value.
    """
    arrays = [np.asarray(a) for a in arrays]
    est = float(statistic(*arrays))
    nan = float("nan")
    if n_boot <= 0:
        return BootstrapDifference(est, nan, nan, nan, 0)
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(inv.max() + 1)]
    vals = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([members[g] for g in pick])
        vals[b] = statistic(*[a[idx] for a in arrays])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return BootstrapDifference(est, nan, nan, nan, 0)
    lo, hi = np.quantile(vals, [0.5 - level / 2.0, 0.5 + level / 2.0])
    p = 2.0 * min(np.mean(vals <= null), np.mean(vals >= null))
    return BootstrapDifference(est, float(lo), float(hi), float(min(1.0, max(p, 1.0 / (len(vals) + 1)))), int(len(vals)))
