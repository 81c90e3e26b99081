"""Multiple-testing adjustment of p-values: Holm (family-wise error rate) and Benjamini-Hochberg (false discovery rate)."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np


def _sorted_finite(p_values: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, output filled with NaN, indices of the finite p-values in ascending order, stable): NaNs are not in the family."""
    p = np.asarray(p_values, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    return p, np.full_like(p, np.nan), ok[np.argsort(p[ok], kind="stable")]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (controls the family-wise error rate). NaNs stay NaN."""
    p, out, order = _sorted_finite(p_values)
    m = len(order)
    if m:
        out[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate). NaNs stay NaN."""
    p, out, order = _sorted_finite(p_values)
    m = len(order)
    if m:
        raw = p[order] * m / np.arange(1, m + 1)
        out[order] = np.minimum(np.minimum.accumulate(raw[::-1])[::-1], 1.0)
    return out


def adjust_pvalues(p_values: Sequence[float], method: Literal["holm", "bh"]) -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown p-value adjustment {method!r}; use 'holm' or 'bh'")
