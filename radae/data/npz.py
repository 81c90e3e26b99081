"""MedMNIST-style arrays -> NIfTI volumes, masks and a manifest, so they run through the normal path.

An ``.npz`` holds ``<split>_images`` (N, D, H, W) -- optionally with a singleton channel axis -- and
``<split>_labels`` (N,) or (N, K). Each volume is written as ``images/<case>.nii.gz`` (float32, the
array as is, axes (D, H, W) taken as (z, y, x)) with the given voxel spacing, origin 0 and identity
direction; its mask as ``masks/<case>.nii.gz`` (uint8 0/1) by ``mask_rule``:

- ``threshold``: voxels above half of the volume's maximum (shape datasets such as AdrenalMNIST3D,
  whose volumes are binary 0/255 organ masks);
- ``cube``: the whole volume (intensity datasets without a segmentation).

``manifest.csv`` in ``out`` lists one case per volume (paths relative to ``out``), with ``patient_id``
= ``case_id``, the label column(s) (``label``, or ``label_0..label_{K-1}``), ``split`` and
``npz_index`` (0-based position in the array).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radae.util.errors import IngestError
from radae.util.fsutil import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

MASK_RULES = ("threshold", "cube")
THRESHOLD_FRACTION = 0.5


def dataset_prefix(npz: str | Path) -> str:
    """Case-id prefix from the file name: ``adrenalmnist3d_64_trainval.npz`` -> ``adrenal``."""
    stem = Path(npz).name.split(".")[0].lower()
    m = re.match(r"^([a-z0-9]+?)mnist", stem)
    prefix = m.group(1) if m and m.group(1) else stem
    return re.sub(r"[^a-z0-9_]+", "_", prefix).strip("_") or "case"


def _load_split(npz: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if not npz.is_file():
        raise IngestError(f"file {npz}: npz not found -> check the path")
    try:
        with np.load(npz, allow_pickle=False) as z:
            keys = list(z.files)
            ik, lk = f"{split}_images", f"{split}_labels"
            if ik not in keys or lk not in keys:
                splits = sorted({k.rsplit("_", 1)[0] for k in keys if k.endswith("_images")})
                raise IngestError(f"file {npz}: no arrays {ik}/{lk} (splits present: {', '.join(splits) or 'none'}; "
                                  f"arrays: {', '.join(keys)}) -> pick one of the splits present")
            images, labels = z[ik], z[lk]
    except IngestError:
        raise
    except (OSError, ValueError) as e:
        raise IngestError(f"file {npz}: cannot read npz ({str(e).splitlines()[0][:120]}) -> give a numpy .npz file") from None
    if images.ndim == 5 and 1 in (images.shape[1], images.shape[-1]):
        images = images[:, 0] if images.shape[1] == 1 else images[..., 0]
    if images.ndim != 4:
        raise IngestError(f"file {npz}: {split}_images has shape {images.shape}; expected (N, D, H, W) 3D volumes "
                          "-> radae needs 3D data (2D MedMNIST sets cannot be imported)")
    labels = labels.reshape(len(labels), -1) if labels.ndim > 1 else labels.reshape(-1, 1)
    if len(labels) != len(images):
        raise IngestError(f"file {npz}: {len(images)} {split}_images but {len(labels)} {split}_labels -> arrays must align")
    if not np.issubdtype(images.dtype, np.number) or not np.all(np.isfinite(images)):
        raise IngestError(f"file {npz}: {split}_images has non-numeric or NaN/inf values -> clean the arrays first")
    return images, labels


def _write(array: np.ndarray, spacing_mm: tuple[float, float, float], target: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing_mm))
    with atomic_path(target, suffix=".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), True)


def make_mask(volume: np.ndarray, mask_rule: str) -> np.ndarray:
    """uint8 0/1 mask of one volume by ``mask_rule`` (see module docstring)."""
    if mask_rule == "cube":
        return np.ones(volume.shape, np.uint8)
    top = float(volume.max())
    return (volume > THRESHOLD_FRACTION * top).astype(np.uint8) if top > 0 else np.zeros(volume.shape, np.uint8)


def import_npz(
    npz: str | Path,
    split: str,
    out: str | Path,
    spacing_mm: tuple[float, float, float],
    mask_rule: str = "threshold",
    prefix: str | None = None,
    modality: str = "CT",
) -> pd.DataFrame:
    """Write split ``split`` of ``npz`` as NIfTI image/mask pairs plus ``out/manifest.csv``; return the manifest.

    Case ids are ``<prefix>_<split>_<n>`` with ``n`` 1-based and zero-padded to 4 digits (prefix from the
    file name unless given). Volumes whose mask would be empty (all-zero volume under ``threshold``)
    are skipped with a warning, since they have no lesion to crop.
    """
    npz, out = Path(npz), Path(out)
    if mask_rule not in MASK_RULES:
        raise IngestError(f"mask_rule {mask_rule!r} unknown -> use one of {', '.join(MASK_RULES)}")
    sp = tuple(float(s) for s in spacing_mm)
    if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
        raise IngestError(f"spacing_mm {spacing_mm!r}: expected three positive numbers (x, y, z) in mm")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise IngestError(f"split {split!r}: use letters, digits, '_' or '-'")
    images, labels = _load_split(npz, split)
    prefix = prefix or dataset_prefix(npz)
    width = max(4, len(str(len(images))))
    label_cols = ["label"] if labels.shape[1] == 1 else [f"label_{j}" for j in range(labels.shape[1])]
    rows, skipped = [], []
    for i, vol in enumerate(images):
        case = f"{prefix}_{split}_{i + 1:0{width}d}"
        mask = make_mask(vol, mask_rule)
        if not mask.any():
            skipped.append(i)
            continue
        image_rel, mask_rel = f"images/{case}.nii.gz", f"masks/{case}.nii.gz"
        _write(np.ascontiguousarray(vol, dtype=np.float32), sp, out / image_rel)
        _write(mask, sp, out / mask_rel)
        row = {"case_id": case, "patient_id": case, "image": image_rel, "mask": mask_rel, "mask_label": 1,
               "seed_x": None, "seed_y": None, "seed_z": None, "modality": modality, "series_uid": None}
        row.update({c: (int(v) if float(v).is_integer() else float(v)) for c, v in zip(label_cols, labels[i])})
        row.update({"split": split, "npz_index": i})
        rows.append(row)
    if skipped:
        logger.warning("%s: %s: %d volume(s) have an empty mask and were skipped (npz indices %s)", npz, split, len(skipped),
                       ", ".join(map(str, skipped[:10])))
    if not rows:
        raise IngestError(f"file {npz}: every {split} volume has an empty mask under rule {mask_rule!r} -> try mask_rule 'cube'")
    df = pd.DataFrame(rows)
    atomic_write_text(out / "manifest.csv", df.to_csv(index=False))
    logger.info("imported %d %s volumes from %s into %s", len(df), split, npz, out)
    return df
