"""Percentile bootstrap intervals that resample clusters (patients), not rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


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

