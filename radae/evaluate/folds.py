"""Outer and inner folds: repeated, patient-grouped, stratified K-fold.

:func:`make_splits` gives the same outer folds to every feature set and model of a task (paired comparisons
need them). Stratification is by class (classification) or by event (survival, :func:`strata_of`); a
patient's lesions always fall in the same fold. :func:`inner_splits` are the hyperparameter-search folds
inside one outer training set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from radae.util.errors import BenchmarkError
from radae.evaluate.survival import is_survival_y


@dataclass(frozen=True)
class FoldSplit:
    repeat: int
    fold: int
    train: np.ndarray  # row indices
    test: np.ndarray


def derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (same parts -> same seed, independent streams otherwise)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def min_groups_per_stratum(strata: np.ndarray, groups: np.ndarray) -> int:
    """Smallest number of distinct groups (patients) that carry each stratum value."""
    frame = pd.DataFrame({"s": np.asarray(strata), "g": np.asarray(groups)})
    counts = frame.drop_duplicates().groupby("s")["g"].nunique()
    return int(counts.min()) if len(counts) > 1 else 0


def make_splits(strata: np.ndarray, groups: np.ndarray, folds: int, repeats: int, seed: int) -> list[FoldSplit]:
    """Repeated stratified group K-fold: ``repeats`` x ``folds`` (train, test) index pairs.

    Raises BenchmarkError if a stratum has fewer patients than folds (a test fold would lack it).
    Every split is checked: no group appears on both sides.
    """
    strata = np.asarray(strata)
    groups = np.asarray(groups)
    have = min_groups_per_stratum(strata, groups)
    if have < folds:
        raise BenchmarkError(
            f"only {have} patients in the smallest outcome class/event group, fewer than cv.folds={folds} "
            "-> lower benchmark.cv.folds or add patients"
        )
    out = []
    for r in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=derived_seed(seed, r))
        for f, (tr, te) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
            if np.intersect1d(groups[tr], groups[te]).size:
                raise AssertionError("grouped split put one patient in train and test")
            out.append(FoldSplit(r, f, np.sort(tr), np.sort(te)))
    return out


def inner_splits(strata: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped stratified folds within an outer training set (fewer if a stratum is small, at least 2)."""
    k = min(folds, min_groups_per_stratum(strata, groups))
    if k < 2:
        raise BenchmarkError(
            "an outer training fold has fewer than 2 patients in one outcome class/event group, so the inner "
            "hyperparameter search cannot be stratified -> lower benchmark.cv.folds or add patients"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(strata)), strata, groups)]


def strata_of(y) -> np.ndarray:
    """Stratification labels: the class, or the event indicator for survival outcomes."""
    return y["event"].astype(int) if is_survival_y(y) else np.asarray(y).astype(int)

