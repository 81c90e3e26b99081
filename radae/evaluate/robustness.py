"""Reproducibility of features: lesion perturbations (pure functions) and the intraclass correlation.

Perturbations act on a lesion as ``(image (z, y, x), mask (z, y, x), spacing_mm (x, y, z))`` on its
original grid and return a new ``(image, mask, spacing_mm)``; nothing is modified in place. Following
the draw-then-apply habit, :func:`draw_perturbation` draws the parameters of one perturbation from an
explicit ``np.random.Generator`` and :func:`apply_perturbation` applies them deterministically. The
benchmark stage then sends the perturbed scan through the whole preprocessing path and both extractors,
exactly as the unperturbed one went.

Kinds (after Zwanenburg et al. 2019, "Assessing robustness of radiomic features by image perturbation"):
- ``noise``: add noise with the image's own noise level (Immerkaer's estimator, times ``noise_scale``):
  Rician (magnitude of complex Gaussian noise) for MR with non-negative intensities, Gaussian otherwise.
- ``resample``: re-sample to a ``resample_factor`` times coarser spacing (linear image, thresholded
  linear mask); the pipeline then resamples it to its target spacing as it does any scan.
- ``rotate``: rotate about a random axis through the lesion centroid by +-(0.5..1) x ``rotation_deg``.
- ``translate``: sub-voxel shift of up to ``translation_vox`` per axis.
- ``erode`` / ``dilate``: the mask by one voxel (6-connected); the image is unchanged.

The ICC (:func:`icc`) treats lesions as subjects and the unperturbed + perturbed extractions as raters
(two-way ANOVA, Shrout & Fleiss 1979 / McGraw & Wong 1996):
- ICC(3,1) consistency: (MSR - MSE) / (MSR + (k - 1) MSE)
- ICC(2,1) absolute agreement: (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)
with n subjects, k raters, MSR rows (subjects), MSC columns (raters), MSE residual mean squares.
"""
from __future__ import annotations

import hashlib
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from radae.util.errors import BenchmarkError

logger = logging.getLogger(__name__)

PERTURBATION_KINDS = ("noise", "resample", "rotate", "translate", "erode", "dilate")
ORIGINAL = "original"


# ----------------------------------------------------------------------------- noise level
def estimate_noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise standard deviation by Immerkaer (1996), median over axial slices.

    Each (y, x) slice is convolved with the Laplacian-difference mask [[1,-2,1],[-2,4,-2],[1,-2,1]];
    sigma = sqrt(pi/2) / (6 (H-2)(W-2)) * sum |I * M|. Insensitive to smooth structure.
    """
    img = np.asarray(image, dtype=float)
    if img.ndim == 2:
        img = img[None]
    if img.shape[1] < 3 or img.shape[2] < 3:
        return float(np.std(img))
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=float)
    sig = []
    for sl in img:
        conv = ndimage.convolve(sl, kernel, mode="reflect")[1:-1, 1:-1]
        h, w = sl.shape
        sig.append(np.sqrt(np.pi / 2.0) * np.abs(conv).sum() / (6.0 * (h - 2) * (w - 2)))
    return float(np.median(sig))


# ----------------------------------------------------------------------------- pure perturbations
def add_noise(image: np.ndarray, sigma: float, seed: int, rician: bool = False) -> np.ndarray:
    """Image plus zero-mean Gaussian noise of std ``sigma``; Rician: |image + n1 + i n2|."""
    rng = np.random.default_rng(seed)
    img = np.asarray(image, dtype=np.float32)
    n1 = rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    if not rician:
        return img + n1
    n2 = rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return np.sqrt((img + n1) ** 2 + n2**2)


def _mask_from_float(m: np.ndarray) -> np.ndarray:
    return (m >= 0.5).astype(np.uint8)


def resample_spacing(
    image: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float], factor: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Re-sample to a ``factor`` times coarser grid (linear image, thresholded linear mask).

    Returns (image, mask, new spacing_mm (x, y, z)); the shape shrinks by ~``factor`` per axis and the
    physical extent is kept. The pipeline then resamples this to its own target spacing.
    """
    img = np.asarray(image, dtype=np.float32)
    shape = np.array(img.shape)
    new_shape = np.maximum(np.round(shape / factor).astype(int), 2)
    zoom = new_shape / shape
    img2 = ndimage.zoom(img, zoom, order=1, mode="nearest", grid_mode=True)
    m2 = ndimage.zoom(np.asarray(mask, dtype=np.float32), zoom, order=1, mode="nearest", grid_mode=True)
    new_spacing = tuple(float(s) for s in np.asarray(spacing_mm, dtype=float) * (shape / new_shape)[::-1])
    return img2, _mask_from_float(m2), new_spacing  # type: ignore[return-value]


def rotation_matrix_zyx(axis: int, angle_deg: float) -> np.ndarray:
    """3x3 rotation in (z, y, x) coordinates about array axis ``axis`` (0 = z, 1 = y, 2 = x)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def rotate(image: np.ndarray, mask: np.ndarray, angle_deg: float, axis: int, spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angle_deg`` about array axis ``axis`` through the lesion centroid (array centre if
    the mask is empty), in physical space.

    With S = diag(spacing in z, y, x) the voxel-space map from output to input is S^-1 R^T S, so
    anisotropic voxels rotate as the physical object would. Linear interpolation; mask thresholded.
    """
    img = np.asarray(image, dtype=np.float32)
    s = np.asarray(spacing_mm, dtype=float)[::-1]
    mat = np.diag(1.0 / s) @ rotation_matrix_zyx(axis, angle_deg).T @ np.diag(s)
    m = np.asarray(mask) > 0
    centre = np.argwhere(m).mean(axis=0) if m.any() else (np.array(img.shape) - 1) / 2.0
    offset = centre - mat @ centre
    img2 = ndimage.affine_transform(img, mat, offset=offset, order=1, mode="nearest")
    m2 = ndimage.affine_transform(np.asarray(mask, dtype=np.float32), mat, offset=offset, order=1, mode="constant", cval=0.0)
    return img2, _mask_from_float(m2)


def translate(image: np.ndarray, mask: np.ndarray, shift_vox: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Shift by ``shift_vox`` (z, y, x) voxels, sub-voxel, linear interpolation; mask thresholded."""
    img2 = ndimage.shift(np.asarray(image, dtype=np.float32), shift_vox, order=1, mode="nearest")
    m2 = ndimage.shift(np.asarray(mask, dtype=np.float32), shift_vox, order=1, mode="constant", cval=0.0)
    return img2, _mask_from_float(m2)


_STRUCT6 = ndimage.generate_binary_structure(3, 1)


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by one voxel (6-connected). Raises BenchmarkError if nothing is left."""
    out = ndimage.binary_erosion(np.asarray(mask) > 0, structure=_STRUCT6).astype(np.uint8)
    if not out.any():
        raise BenchmarkError("mask erosion by one voxel leaves no lesion voxel (lesion too thin)")
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one voxel (6-connected)."""
    return ndimage.binary_dilation(np.asarray(mask) > 0, structure=_STRUCT6).astype(np.uint8)


# ----------------------------------------------------------------------------- draw, then apply
@dataclass(frozen=True)
class PerturbationSettings:
    noise_scale: float = 1.0  # added noise std = this x the image's estimated noise std
    resample_factor: float = 1.5
    rotation_deg: float = 10.0
    translation_vox: float = 1.0


@dataclass(frozen=True)
class Perturbation:
    kind: str
    params: tuple[tuple[str, float], ...] = ()

    def get(self, name: str) -> float:
        return dict(self.params)[name]


def draw_perturbation(kind: str, rng: np.random.Generator, settings: PerturbationSettings = PerturbationSettings()) -> Perturbation:
    """Draw the random parameters of one perturbation (the application is deterministic)."""
    if kind == "noise":
        return Perturbation(kind, (("scale", settings.noise_scale), ("seed", float(rng.integers(0, 2**31 - 1)))))
    if kind == "resample":
        return Perturbation(kind, (("factor", settings.resample_factor),))
    if kind == "rotate":
        angle = float(rng.uniform(0.5, 1.0) * settings.rotation_deg * rng.choice([-1.0, 1.0]))
        return Perturbation(kind, (("axis", float(rng.integers(0, 3))), ("angle_deg", angle)))
    if kind == "translate":
        shift = rng.uniform(-settings.translation_vox, settings.translation_vox, size=3)
        return Perturbation(kind, tuple((f"shift_{a}", float(v)) for a, v in zip("zyx", shift)))
    if kind in ("erode", "dilate"):
        return Perturbation(kind)
    raise ValueError(f"unknown perturbation {kind!r}; known: {PERTURBATION_KINDS}")


def apply_perturbation(
    p: Perturbation, image: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float], modality: str | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Apply a drawn perturbation: new (image float32, mask uint8, spacing_mm (x, y, z)).

    Only ``resample`` changes the shape and spacing; the inputs are never modified.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    spacing = tuple(float(s) for s in spacing_mm)
    if p.kind == "noise":
        sigma = p.get("scale") * estimate_noise_sigma(image)
        rician = (modality or "").upper() == "MR" and float(image.min()) >= 0.0
        return add_noise(image, sigma, int(p.get("seed")), rician=rician), mask, spacing  # type: ignore[return-value]
    if p.kind == "resample":
        return resample_spacing(image, mask, spacing, p.get("factor"))
    if p.kind == "rotate":
        return (*rotate(image, mask, p.get("angle_deg"), int(p.get("axis")), spacing), spacing)  # type: ignore[return-value]
    if p.kind == "translate":
        return (*translate(image, mask, [p.get("shift_z"), p.get("shift_y"), p.get("shift_x")]), spacing)  # type: ignore[return-value]
    if p.kind == "erode":
        return image, erode(mask), spacing  # type: ignore[return-value]
    if p.kind == "dilate":
        return image, dilate(mask), spacing  # type: ignore[return-value]
    raise ValueError(f"unknown perturbation {p.kind!r}")


# ----------------------------------------------------------------------------- ICC
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


# ----------------------------------------------------------------------------- what each feature set sees
INPUTS_KEY = "__inputs__"  # extract() may return {INPUTS_KEY: {feature_set: digest of the arrays that set's extractor read}}


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' dtype, shape and bytes (same arrays -> same digest)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def input_digests(roi_row: Mapping, mask_channel: bool) -> dict[str, str]:
    """Digests of what each feature set's extractor reads for one preprocessed lesion (its ROI index row).

    learned: the ROI image (and the ROI mask when the encoder takes a mask channel); handcrafted: the
    resampled lesion crop image and mask handed to PyRadiomics.
    """
    from radae.preprocess.store import load_roi

    out = {}
    if roi_row.get("roi_path"):
        roi = load_roi(roi_row["roi_path"])
        out["learned"] = array_digest(roi.image, roi.mask) if mask_channel else array_digest(roi.image)
    if roi_row.get("radiomics_image") and roi_row.get("radiomics_mask"):
        import SimpleITK as sitk

        out["handcrafted"] = array_digest(sitk.GetArrayFromImage(sitk.ReadImage(str(roi_row["radiomics_image"]))),
                                          sitk.GetArrayFromImage(sitk.ReadImage(str(roi_row["radiomics_mask"]))))
    return out


def input_changes(digests: pd.DataFrame) -> pd.DataFrame:
    """Per perturbation and feature set: how many lesions' extractor input differs from their unperturbed input.

    ``digests``: case_id, condition, feature_set, digest. Columns: condition, feature_set, n_lesions,
    n_changed, fraction_changed. A perturbation that changes no lesion's input cannot lower that set's ICC.
    """
    cols = ["condition", "feature_set", "n_lesions", "n_changed", "fraction_changed"]
    if digests.empty:
        return pd.DataFrame(columns=cols)
    orig = digests[digests["condition"] == ORIGINAL].set_index(["case_id", "feature_set"])["digest"]
    rows = []
    pert = digests[digests["condition"] != ORIGINAL]
    for (cond, fset), g in pert.groupby(["condition", "feature_set"], sort=True):
        ref = orig.reindex(list(zip(g["case_id"], g["feature_set"]))).to_numpy()
        changed = int((g["digest"].to_numpy() != ref).sum())
        rows.append({"condition": cond, "feature_set": fset, "n_lesions": len(g), "n_changed": changed,
                     "fraction_changed": changed / len(g)})
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- the study
Extractor = Callable[[str, Perturbation | None], Mapping[str, Mapping[str, float]]]


def perturbation_study(
    case_ids: Sequence[str],
    kinds: Sequence[str],
    extract: Extractor,
    seed: int,
    settings: PerturbationSettings = PerturbationSettings(),
    on_failure: Callable[[str, str], None] | None = None,
    inputs: list[dict] | None = None,
) -> pd.DataFrame:
    """Extract every lesion unperturbed and under each perturbation kind; long table of the values.

    ``extract(case_id, perturbation_or_None)`` returns ``{feature_set: {feature: value}}`` - the stage
    passes a function that applies the perturbation to the lesion's inputs and runs the real
    extractors. Parameters are drawn per lesion from ``SeedSequence([seed, lesion index])``, one
    draw per kind, so results do not depend on which other lesions are in the study.
    A lesion whose extraction fails under any condition is reported through ``on_failure(case_id,
    message)`` and left out entirely (the ICC needs every condition).
    Columns: case_id, condition, feature_set, feature, value. If ``extract`` also returns
    ``{INPUTS_KEY: {feature_set: digest}}``, those rows (case_id, condition, feature_set, digest) are
    appended to ``inputs`` (for :func:`input_changes`), for the lesions that completed.
    """
    rows: list[dict] = []
    for i, cid in enumerate(case_ids):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
        conditions: list[tuple[str, Perturbation | None]] = [(ORIGINAL, None)]
        conditions += [(k, draw_perturbation(k, rng, settings)) for k in kinds]
        lesion_rows: list[dict] = []
        lesion_inputs: list[dict] = []
        try:
            for name, pert in conditions:
                feats = dict(extract(str(cid), pert))
                for fset, digest in (feats.pop(INPUTS_KEY, None) or {}).items():
                    lesion_inputs.append({"case_id": str(cid), "condition": name, "feature_set": fset, "digest": digest})
                for fset, values in feats.items():
                    for feat, val in values.items():
                        lesion_rows.append({"case_id": str(cid), "condition": name, "feature_set": fset, "feature": feat, "value": float(val)})
        except Exception as e:  # noqa: BLE001 - any failure of one lesion is reported, the study goes on
            msg = f"robustness: {name}: {e}".replace("\n", " ")
            logger.warning("case %s: %s", cid, msg)
            if on_failure is not None:
                on_failure(str(cid), msg)
            continue
        rows.extend(lesion_rows)
        if inputs is not None:
            inputs.extend(lesion_inputs)
    return pd.DataFrame(rows, columns=["case_id", "condition", "feature_set", "feature", "value"])


def write_study_extras(values: pd.DataFrame, digests: pd.DataFrame, kind: Literal["icc3_1", "icc2_1"], seed: int, out_dir) -> dict:
    """Write ``robustness_inputs.parquet`` and ``robustness_families.parquet`` into ``out_dir``; their summary.json part."""
    from pathlib import Path

    from radae.util.fsutil import atomic_path

    changes = input_changes(digests)
    fams = family_table(values, kind, seed=seed)
    for name, df in (("robustness_inputs.parquet", changes), ("robustness_families.parquet", fams)):
        with atomic_path(Path(out_dir) / name, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    changed = {f"{r.condition}/{r.feature_set}": {"n_lesions": int(r.n_lesions), "n_changed": int(r.n_changed)}
               for r in changes.itertuples(index=False)}
    families = {f"{r.feature_set}/{r.family}": {"n_features": int(r.n_features), "median_icc": r.median_icc,
                                                "ci_low": r.ci_low, "ci_high": r.ci_high} for r in fams.itertuples(index=False)}
    return {"inputs_changed": changed, "families": families}
