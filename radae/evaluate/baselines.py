"""Baseline feature sets that expose weak signatures: lesion volume, voxel PCA, clinical covariates.

- volume: ``log(lesion_volume_ml)`` from ``preprocess/rois.parquet`` (the original-grid mask). Many
  radiomics signatures are volume proxies; a set that cannot beat this adds nothing.
- voxel PCA: the ROI itself (image and mask channels of the preprocess ``.npz``), block-averaged to a
  small grid, reduced by a :class:`VoxelPCA` that is *fitted inside each training fold*.
- clinical: manifest columns; numbers stay numbers, text categories become indicator columns
  (category list from the values alone, no outcome involved); missing values are imputed in the fold.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from radae.util.errors import BenchmarkError, case_message
from radae.preprocess.store import load_roi

logger = logging.getLogger(__name__)

VOLUME_COLUMN = "log_lesion_volume_ml"


class VoxelPCA(TransformerMixin, BaseEstimator):
    """PCA of flattened voxels with the component count capped by the training-fold size.

    ``n_components`` is an upper bound: at most ``n_samples - 1`` and ``n_features`` components are
    kept, so a small fold never fails. Learned state (``pca_``) comes only from ``fit``'s rows.
    """

    def __init__(self, n_components: int = 10, random_state: int | None = None):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        k = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        self.pca_ = PCA(n_components=k, svd_solver="auto", random_state=self.random_state).fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return self.pca_.transform(np.asarray(X, dtype=float))


def volume_features(rois: pd.DataFrame) -> pd.DataFrame:
    """``case_id`` + ``log_lesion_volume_ml`` (natural log; volumes must be > 0)."""
    if "lesion_volume_ml" not in rois.columns:
        raise BenchmarkError("preprocess/rois.parquet: column lesion_volume_ml is missing -> rerun preprocess")
    vol = pd.to_numeric(rois["lesion_volume_ml"], errors="coerce").to_numpy(dtype=float)
    bad = ~(vol > 0)
    if bad.any():
        first = rois["case_id"].to_numpy()[bad][0]
        raise BenchmarkError(case_message(first, "preprocess/rois.parquet", f"lesion_volume_ml is {vol[bad][0]!r}, expected > 0", "check the mask of this lesion"))
    return pd.DataFrame({"case_id": rois["case_id"].astype(str).to_numpy(), VOLUME_COLUMN: np.log(vol)})


def block_average(array: np.ndarray, grid_vox: int) -> np.ndarray:
    """Resize a (z, y, x) array to ``grid_vox``^3 by averaging (linear zoom after an anti-alias box filter)."""
    a = np.asarray(array, dtype=np.float32)
    factors = [grid_vox / s for s in a.shape]
    size = [max(1, int(round(1.0 / f))) for f in factors]
    if any(s > 1 for s in size):
        a = ndimage.uniform_filter(a, size=size, mode="nearest")
    out = ndimage.zoom(a, factors, order=1, mode="nearest", grid_mode=True)
    return out[:grid_vox, :grid_vox, :grid_vox]


def resolve_path(path: str | Path, run_dir: Path) -> Path:
    """Index tables may hold absolute paths or paths relative to the run folder or the working directory."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return run_dir / p


def voxel_features(rois: pd.DataFrame, run_dir: Path, grid_vox: int = 16) -> pd.DataFrame:
    """``case_id`` + ``voxel_00000 ...``: image then mask channel of each ROI, ``grid_vox``^3 each."""
    rows = []
    for case_id, roi_path in zip(rois["case_id"].astype(str), rois["roi_path"]):
        path = resolve_path(roi_path, run_dir)
        try:
            roi = load_roi(path)
        except (OSError, KeyError, ValueError) as e:
            raise BenchmarkError(case_message(case_id, path, f"cannot read the ROI for voxel PCA ({e})", "rerun preprocess")) from None
        rows.append(np.concatenate([block_average(roi.image, grid_vox).ravel(), block_average(roi.mask, grid_vox).ravel()]))
    X = np.vstack(rows) if rows else np.zeros((0, 2 * grid_vox**3))
    cols = [f"voxel_{i:05d}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols)
    frame.insert(0, "case_id", rois["case_id"].astype(str).to_numpy())
    return frame


def clinical_features(cases: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``case_id`` + encoded clinical covariates. Unknown column names raise BenchmarkError."""
    missing = [c for c in columns if c not in cases.columns]
    if missing:
        raise BenchmarkError(
            f"benchmark.clinical: column(s) {missing} not in ingest/cases.parquet -> use manifest column names "
            f"(available: {', '.join(map(str, cases.columns))})"
        )
    out = pd.DataFrame({"case_id": cases["case_id"].astype(str).to_numpy()})
    for c in columns:
        col = cases[c]
        num = pd.to_numeric(col, errors="coerce")
        if col.dtype == bool or num.notna().sum() == col.notna().sum():
            out[f"clinical_{c}"] = num.astype(float).to_numpy()
        else:
            values = col.astype("string")
            for cat in sorted(values.dropna().unique()):
                hit = (values == cat).fillna(False).to_numpy(dtype=float)
                out[f"clinical_{c}={cat}"] = np.where(values.isna().to_numpy(), np.nan, hit)
    return out
