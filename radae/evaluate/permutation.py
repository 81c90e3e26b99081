"""Permutation test of the whole nested CV (Ojala & Garriga 2010, test 1), patient level.

Outcomes are permuted between patients (a patient's lesions move together), fresh stratified folds are drawn
for the permuted outcome, and the *entire* pipeline - imputation, filtering, selection, inner tuning, fit - is
re-run; the statistic is the fold-mean main metric. p = (1 + #{null >= observed}) / (1 + N): exact under
"the features carry no information about the outcome", whatever the dependence between folds. Run for the
primary sets only (each permutation costs one full CV per set). The shuffled-label control of the benchmark
is the same idea with 1 permutation per repeat: a sanity check, not a test.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def permute_between_patients(y, groups: np.ndarray, rng: np.random.Generator):
    """Outcomes shuffled between patients; rows of one patient keep one outcome (requires consistent outcomes)."""
    uniq, first, inv = np.unique(groups, return_index=True, return_inverse=True)
    perm = rng.permutation(len(uniq))
    return y[first[perm][inv]]


def permutation_test(observed: dict[str, float], run_cv: Callable[[str, object, int], float], sets: Sequence[str], y,
                     groups: np.ndarray, n_perm: int, rng: np.random.Generator) -> dict:
    """Permutation p-values of each set's fold-mean metric (and of the difference of the first two sets).

    ``run_cv(set, y_perm, k)`` re-runs the whole nested CV of ``set`` on the permuted outcome (k-th
    permutation, for fold seeds) and returns its fold-mean metric. The same permutation is used for every set,
    so the difference of the first two is tested too (against "neither carries information").
    """
    null = {s: np.full(n_perm, np.nan) for s in sets}
    for k in range(n_perm):
        y_perm = permute_between_patients(y, groups, rng)
        for s in sets:
            null[s][k] = run_cv(s, y_perm, k)
        logger.info("permutation %d/%d done", k + 1, n_perm)

    def pval(obs: float, nul: np.ndarray) -> float:
        nul = nul[np.isfinite(nul)]
        if not np.isfinite(obs) or not len(nul):
            return float("nan")
        return float((1 + np.sum(nul >= obs)) / (1 + len(nul)))

    out = {"n_permutations": int(n_perm), "sets": {}}
    for s in sets:
        out["sets"][s] = {"observed": observed.get(s), "null_mean": float(np.nanmean(null[s])) if n_perm else None,
                          "p_value": pval(observed.get(s, np.nan), null[s])}
    if len(sets) >= 2:
        a, b = sets[0], sets[1]
        out["difference"] = {"set_a": a, "set_b": b, "observed": observed.get(a, np.nan) - observed.get(b, np.nan),
                             "p_value_two_sided": pval(abs(observed.get(a, np.nan) - observed.get(b, np.nan)),
                                                       np.abs(null[a] - null[b]))}
    return out
