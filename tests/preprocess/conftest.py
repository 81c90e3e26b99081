"""Tiny real NIfTI volumes and manifests in tmp_path for the preprocessing tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk


def write_nifti(array_zyx: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> str:
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        img.SetDirection(tuple(float(d) for d in direction))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


def sphere(shape_zyx, center_zyx, radius_vox) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    c = np.asarray(center_zyx, float)
    return ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius_vox**2).astype(np.uint8)


def lesion_scan(rng: np.random.Generator, shape_zyx=(20, 24, 28), center_zyx=(10, 12, 14), radius_vox=3.5):
    """CT-like image (HU) with a bright sphere, and its mask."""
    mask = sphere(shape_zyx, center_zyx, radius_vox)
    img = rng.normal(40.0, 15.0, shape_zyx).astype(np.float32) + 80.0 * mask
    return img, mask


def write_case(folder: Path, case_id: str, rng: np.random.Generator, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
               **scan) -> dict:
    img, mask = lesion_scan(rng, **scan)
    return {
        "case_id": case_id, "patient_id": case_id.split("_")[0], "modality": "CT", "mask_label": 1,
        "image": write_nifti(img, folder / f"{case_id}_img.nii.gz", spacing, origin),
        "mask": write_nifti(mask, folder / f"{case_id}_msk.nii.gz", spacing, origin),
    }


def write_manifest(rows: list[dict], path: Path) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
