"""On-disk format of preprocessed lesions (the contract between preprocess, pretrain and extract).

ROI file (``.npz``, uncompressed, in the cache):
- ``image``: float32 (Z, Y, X) normalised intensities, fixed size ``roi_size_vox`` (x, y, z order in config)
- ``mask``: uint8 (Z, Y, X) lesion mask on the same grid (all zeros for seed-point cases)
- ``spacing_mm``: float64 (3,) target spacing, x, y, z
- ``center_mm``: float64 (3,) physical LPS centre of the crop

Patch file (``.npz``): ``patches`` float32 (N, Z, Y, X) random whole-volume patches, same size/spacing.

The index table ``<run>/preprocess/rois.parquet`` has one row per lesion, see ``radae.runfolder.ROI_INDEX_COLUMNS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radae.util.fsutil import atomic_path


@dataclass(frozen=True)
class RoiArrays:
    image: np.ndarray
    mask: np.ndarray
    spacing_mm: np.ndarray
    center_mm: np.ndarray


def save_roi(path: str | Path, image: np.ndarray, mask: np.ndarray, spacing_mm, center_mm) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, image=image.astype(np.float32), mask=mask.astype(np.uint8),
                     spacing_mm=np.asarray(spacing_mm, dtype=np.float64), center_mm=np.asarray(center_mm, dtype=np.float64))


def load_roi(path: str | Path) -> RoiArrays:
    with np.load(path, allow_pickle=False) as z:
        return RoiArrays(z["image"], z["mask"], z["spacing_mm"], z["center_mm"])


def save_patches(path: str | Path, patches: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, patches=patches.astype(np.float32))


def load_patches(path: str | Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return z["patches"]
