"""The statistical unit: rows (lesions) mapped to patients, for every metric, test and survival fit.

With ``extract.aggregate: all`` a patient with several lesions has several benchmark rows. Folds and bootstraps
already keep a patient's rows together; this module makes the *numbers* count patients too:

- classification with a patient-level label (every lesion of a patient has the same label): models are fitted on
  lesion rows, and a patient's prediction is the mean of its lesions' predicted probabilities (or scores); every
  metric, pooled estimate, bootstrap and paired test is computed on one value per patient;
- survival (time and event are always the patient's): the model is fitted on one row per patient, the mean of its
  lesions' feature values (NaN-aware; no label and no other patient is used, so this is not fitted to data), and its
  risk applies to every lesion row of the patient;
- a label that differs between a patient's lesions is a lesion-level outcome: the lesion stays the unit (folds and
  bootstraps still resample patients), and :func:`units_for` returns None.

:class:`Units` does the mapping; :func:`units_for` decides whether it applies; :func:`per_patient` applies it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Units:
    """Row -> patient map of one set of rows (patients in order of first appearance)."""

    codes: np.ndarray  # per row, its patient's index 0..n-1
    first: np.ndarray  # per patient, the index of its first row
    patients: np.ndarray  # per patient, its id

    @classmethod
    def of(cls, groups) -> "Units":
        codes, uniq = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), sort=False)
        _, first = np.unique(codes, return_index=True)  # codes follow first appearance, so this is patient order
        return cls(np.asarray(codes, dtype=int), np.asarray(first, dtype=int), np.asarray(uniq, dtype=object))

    @property
    def n(self) -> int:
        return len(self.first)

    @property
    def identity(self) -> bool:
        return self.n == len(self.codes)

    def take(self, values):
        """The first row's value per patient (outcomes, ids: equal across a patient's rows)."""
        return values[self.first]

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Per patient, the NaN-aware mean of its rows (1-D or 2-D; all-NaN stays NaN)."""
        v = np.asarray(values, dtype=float)
        flat = v.reshape(len(v), -1)
        ok = np.isfinite(flat)
        total = np.zeros((self.n, flat.shape[1]))
        count = np.zeros_like(total)
        np.add.at(total, self.codes, np.where(ok, flat, 0.0))
        np.add.at(count, self.codes, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return out.reshape((self.n,) + v.shape[1:])

    def spread(self, per_patient: np.ndarray) -> np.ndarray:
        """A per-patient value on every row of the patient."""
        return np.asarray(per_patient)[self.codes]


def _same_within(values: np.ndarray, codes: np.ndarray, first: np.ndarray) -> bool:
    v = np.asarray(values)
    ref = v[first][codes]
    both_nan = pd.isna(v) & pd.isna(ref) if v.dtype.kind in "fO" else np.zeros(len(v), dtype=bool)
    return bool(np.all((v == ref) | both_nan))


def units_for(y, groups) -> Units | None:
    """The patient map when some patient has several rows and its outcome is the same on all of them, else None.

    ``y``: binary labels or a scikit-survival structured array (time and event must both agree).
    """
    if groups is None:
        return None
    u = Units.of(groups)
    if u.identity:
        return None
    names = getattr(getattr(y, "dtype", None), "names", None)
    fields = [y[f] for f in names] if names else [np.asarray(y)]
    return u if all(_same_within(f, u.codes, u.first) for f in fields) else None


def per_patient(y, groups, *scores: np.ndarray) -> tuple:
    """(outcome, patient of each entry, *scores) with one entry per patient (the mean of each score over its rows)
    when :func:`units_for` applies, else the rows unchanged."""
    u = units_for(y, groups)
    if u is None:
        return (y, groups, *(np.asarray(s, dtype=float) for s in scores))
    return (u.take(y), u.patients, *(u.mean(s) for s in scores))
