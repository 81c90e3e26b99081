"""Intraclass correlation of features across perturbations, its intervals, and per-family summaries.

The ICC (:func:`icc`) treats lesions as subjects and the unperturbed + perturbed extractions as raters
(two-way ANOVA, Shrout & Fleiss 1979 / McGraw & Wong 1996):
- ICC(3,1) consistency: (MSR - MSE) / (MSR + (k - 1) MSE)
- ICC(2,1) absolute agreement: (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)
with n subjects, k raters, MSR rows (subjects), MSC columns (raters), MSE residual mean squares.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from radae.evaluate.perturbations import ORIGINAL


def icc(ratings: np.ndarray, kind: Literal["icc3_1", "icc2_1"] = "icc3_1") -> np.ndarray | float:
    """Single-measure ICC of ``ratings`` (n subjects, k raters[, p features]); NaN where undefined.

    Undefined: no between-subject or residual variation at all (0/0), or fewer than 2 subjects/raters.
    """
    r = np.asarray(ratings, dtype=float)
    squeeze = r.ndim == 2
    if squeeze:
        r = r[:, :, None]
    n, k = r.shape[:2]
    if n < 2 or k < 2:
        out = np.full(r.shape[2], np.nan)
        return float(out[0]) if squeeze else out
    msr, msc, mse = _mean_squares(r)
    if kind == "icc3_1":
        den = msr + (k - 1) * mse
    elif kind == "icc2_1":
        den = msr + (k - 1) * mse + k * (msc - mse) / n
    else:
        raise ValueError(f"unknown ICC kind {kind!r}; use 'icc3_1' or 'icc2_1'")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-300, (msr - mse) / np.where(den > 1e-300, den, 1.0), np.nan)
    return float(out[0]) if squeeze else out


def _mean_squares(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-way ANOVA mean squares (rows = subjects, columns = raters, residual) of ratings (n, k, p), per feature."""
    n, k = r.shape[:2]
    grand = r.mean(axis=(0, 1))
    row = r.mean(axis=1)
    col = r.mean(axis=0)
    ss_total = ((r - grand) ** 2).sum(axis=(0, 1))
    ss_rows = k * ((row - grand) ** 2).sum(axis=0)
    ss_cols = n * ((col - grand) ** 2).sum(axis=0)
    ss_err = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))


def icc_ci(ratings: np.ndarray, kind: Literal["icc3_1", "icc2_1"] = "icc3_1", level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact F-based confidence interval of the single-measure ICC (McGraw & Wong 1996, as pingouin computes it).

    ICC(3,1): F = MSR/MSE with (n-1, (n-1)(k-1)) df; F_L = F / F_{1-a/2}(n-1, (n-1)(k-1)),
    F_U = F x F_{1-a/2}((n-1)(k-1), n-1); bounds (F_L - 1) / (F_L + k - 1) and (F_U - 1) / (F_U + k - 1).
    ICC(2,1): Satterthwaite df v for the denominator (McGraw & Wong, case 2A); bounds
    n (MSR - F* MSE) / (F* (k MSC + (kn - k - n) MSE) + n MSR) with F* = F_{1-a/2}(n-1, v), and the upper
    with F_{1-a/2}(v, n-1). Ratings (n, k) or (n, k, p); NaN where the ICC is undefined.
    """
    from scipy.stats import f as fdist

    r = np.asarray(ratings, dtype=float)
    squeeze = r.ndim == 2
    if squeeze:
        r = r[:, :, None]
    n, k = r.shape[:2]
    nan = np.full(r.shape[2], np.nan)
    if n < 2 or k < 2:
        return (float(nan[0]), float(nan[0])) if squeeze else (nan, nan.copy())
    msr, msc, mse = _mean_squares(r)
    a = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "icc3_1":
            df1, df2 = n - 1, (n - 1) * (k - 1)
            f = msr / mse
            fl = f / fdist.ppf(1 - a / 2, df1, df2)
            fu = f * fdist.ppf(1 - a / 2, df2, df1)
            lo, hi = (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)
        elif kind == "icc2_1":
            icc2 = np.asarray(icc(r, "icc2_1"), dtype=float)
            fj = msc / mse
            vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
            vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
            v = vn / vd
            f2u = fdist.ppf(1 - a / 2, n - 1, v)
            f2l = fdist.ppf(1 - a / 2, v, n - 1)
            lo = n * (msr - f2u * mse) / (f2u * (k * msc + (k * n - k - n) * mse) + n * msr)
            hi = n * (f2l * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f2l * msr)
        else:
            raise ValueError(f"unknown ICC kind {kind!r}; use 'icc3_1' or 'icc2_1'")
    lo, hi = np.where(np.isfinite(lo), lo, np.nan), np.where(np.isfinite(hi), hi, np.nan)
    return (float(lo[0]), float(hi[0])) if squeeze else (lo, hi)


@dataclass(frozen=True)
class ValueCube:
    """Perturbation-study values of one feature set as an array (lesions, conditions, features)."""

    case_ids: np.ndarray
    conditions: tuple[str, ...]
    features: tuple[str, ...]
    values: np.ndarray


def value_cubes(values: pd.DataFrame) -> dict[str, ValueCube]:
    """Long study values (case_id, condition, feature_set, feature, value) -> one cube per feature set.

    Missing (lesion, condition, feature) cells are NaN.
    """
    out = {}
    for fset, g in values.groupby("feature_set", sort=True):
        wide = g.pivot_table(index="case_id", columns=["condition", "feature"], values="value", aggfunc="first", dropna=False)
        conditions = tuple(sorted(g["condition"].unique(), key=lambda c: (c != ORIGINAL, c)))
        features = tuple(sorted(g["feature"].unique()))
        cols = pd.MultiIndex.from_product([conditions, features])
        wide = wide.reindex(columns=cols)
        cube = wide.to_numpy(dtype=float).reshape(len(wide), len(conditions), len(features))
        out[str(fset)] = ValueCube(wide.index.to_numpy().astype(str), conditions, features, cube)
    return out


def icc_from_cube(cube: ValueCube, kind: Literal["icc3_1", "icc2_1"] = "icc3_1", case_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ICC per feature, lesions used per feature), optionally restricted to ``case_ids``.

    Per feature, lesions with a NaN under any condition are left out.
    """
    v = cube.values
    if case_ids is not None:
        v = v[np.isin(cube.case_ids, np.asarray(list(map(str, case_ids))))]
    complete = np.isfinite(v).all(axis=1)  # (lesions, features)
    out = np.full(v.shape[2], np.nan)
    n_used = complete.sum(axis=0)
    full = complete.all(axis=0)
    if v.shape[0] >= 2 and full.any():
        out[full] = icc(v[:, :, full], kind)
    for j in np.flatnonzero(~full & (n_used >= 2)):
        out[j] = icc(v[complete[:, j], :, j], kind)
    return out, n_used


def _cube_ci(cube: ValueCube, kind, case_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature 95% ICC interval of a cube, on each feature's complete lesions (as :func:`icc_from_cube`)."""
    v = cube.values
    if case_ids is not None:
        v = v[np.isin(cube.case_ids, np.asarray(list(map(str, case_ids))))]
    complete = np.isfinite(v).all(axis=1)
    lo, hi = np.full(v.shape[2], np.nan), np.full(v.shape[2], np.nan)
    for j in range(v.shape[2]):
        if complete[:, j].sum() >= 2:
            lo[j], hi[j] = icc_ci(v[complete[:, j], :, j], kind)
    return lo, hi


def icc_table(values: pd.DataFrame, kind: Literal["icc3_1", "icc2_1"] = "icc3_1", case_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """ICC per (feature_set, feature) from long values (case_id, condition, feature_set, feature, value).

    ``case_ids`` restricts the lesions used (e.g. to a training fold). Per feature, lesions missing a
    condition or holding a NaN are left out; n_lesions says how many remained.
    Columns: feature_set, feature, icc, icc_ci_low, icc_ci_high (95%, :func:`icc_ci`), n_lesions, n_conditions.
    """
    frames = []
    for fset, cube in value_cubes(values).items():
        vals, n_used = icc_from_cube(cube, kind, case_ids)
        lo, hi = _cube_ci(cube, kind, case_ids)
        frames.append(pd.DataFrame({"feature_set": fset, "feature": list(cube.features), "icc": vals, "icc_ci_low": lo,
                                    "icc_ci_high": hi, "n_lesions": n_used.astype(int), "n_conditions": len(cube.conditions)}))
    cols = ["feature_set", "feature", "icc", "icc_ci_low", "icc_ci_high", "n_lesions", "n_conditions"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def robust_fractions(table: pd.DataFrame, thresholds: Sequence[float] = (0.75, 0.9)) -> dict[str, dict[str, float]]:
    """Per feature set: n_features, n_undefined, median ICC, and the fraction with ICC >= each threshold.

    Undefined ICCs (NaN) count in the denominator as not robust.
    """
    out: dict[str, dict[str, float]] = {}
    for fset, g in table.groupby("feature_set", sort=True):
        x = g["icc"].to_numpy(dtype=float)
        entry = {
            "n_features": int(len(x)),
            "n_undefined": int(np.isnan(x).sum()),
            "median_icc": float(np.nanmedian(x)) if np.isfinite(x).any() else float("nan"),
        }
        for t in thresholds:
            entry[f"fraction_icc_ge_{t:.2f}".replace(".", "_")] = float(np.mean(np.nan_to_num(x, nan=-np.inf) >= t)) if len(x) else float("nan")
        out[str(fset)] = entry
    return out


# ----------------------------------------------------------------------------- families, with intervals
_RADIOMICS_CLASS = re.compile(r"_(shape|shape2D|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_")


def feature_family(feature: str) -> str:
    """PyRadiomics class (``original_glcm_Contrast`` -> ``glcm``), else the name without its index (``latent_003`` -> ``latent``)."""
    m = _RADIOMICS_CLASS.search(feature)
    if m:
        return m.group(1)
    return re.sub(r"_?\d+$", "", feature) or feature


def family_table(values: pd.DataFrame, kind: Literal["icc3_1", "icc2_1"] = "icc3_1", n_boot: int = 200,
                 seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per feature set and feature family (and ``all``): median ICC with a lesion-bootstrap percentile interval.

    Lesions (subjects) are resampled with replacement ``n_boot`` times; each replicate recomputes every
    feature's ICC on the lesions complete for all features and takes the median over the family. The
    fraction of features with ICC >= 0.75 / 0.9 (undefined = not robust) is given as in :func:`robust_fractions`.
    Columns: feature_set, family, n_features, median_icc, ci_low, ci_high, fraction_icc_ge_0_75, fraction_icc_ge_0_90, n_lesions.
    """
    rows = []
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 29]))
    for fset, cube in value_cubes(values).items():
        point, _ = icc_from_cube(cube, kind)
        v = cube.values[np.isfinite(cube.values).all(axis=(1, 2))]
        boots = np.full((n_boot, v.shape[2]), np.nan)
        if len(v) >= 3:
            for b in range(n_boot):
                boots[b] = icc(v[rng.integers(0, len(v), len(v))], kind)
        fams = np.array([feature_family(f) for f in cube.features])
        for fam in ["all", *sorted(set(fams))]:
            sel = np.ones(len(fams), bool) if fam == "all" else fams == fam
            x = point[sel]
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med_b = np.nanmedian(boots[:, sel], axis=1)
            med_b = med_b[np.isfinite(med_b)]
            lo, hi = (np.quantile(med_b, [(1 - level) / 2, (1 + level) / 2]) if len(med_b) >= 10 else (np.nan, np.nan))
            rows.append({"feature_set": fset, "family": fam, "n_features": int(sel.sum()),
                         "median_icc": float(np.nanmedian(x)) if np.isfinite(x).any() else np.nan,
                         "ci_low": float(lo), "ci_high": float(hi),
                         "fraction_icc_ge_0_75": float(np.mean(np.nan_to_num(x, nan=-np.inf) >= 0.75)),
                         "fraction_icc_ge_0_90": float(np.mean(np.nan_to_num(x, nan=-np.inf) >= 0.90)),
                         "n_lesions": int(len(v))})
    cols = ["feature_set", "family", "n_features", "median_icc", "ci_low", "ci_high", "fraction_icc_ge_0_75",
            "fraction_icc_ge_0_90", "n_lesions"]
    return pd.DataFrame(rows, columns=cols)

