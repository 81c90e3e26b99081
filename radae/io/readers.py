"""Dispatch by file kind; all geometry checks between image and mask live here."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radae.errors import IngestError, case_message
from radae.io.volume import Volume

logger = logging.getLogger(__name__)

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 1e-2
DIRECTION_ATOL = 1e-3


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: str | Path, series_uid: str | None = None, case_id: str | None = None) -> Volume:
    """Read a NIfTI/NRRD/MHA file or a DICOM series folder as a float32 3D Volume."""
    path = Path(path)
    if not path.exists():
        raise IngestError(case_message(case_id, path, "image not found", "check the manifest path"))
    if path.is_dir():
        from radae.io.dicom import read_dicom_series

        vol = read_dicom_series(path, series_uid=series_uid, case_id=case_id)
    else:
        vol = _read_file(path, case_id, what="image")
    arr = vol.array
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return Volume(arr, vol.spacing_mm, vol.origin_mm, vol.direction, vol.meta)


def _read_file(path: Path, case_id: str | None, what: str) -> Volume:
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1][:160] if str(e).strip() else "unknown reader error"
        raise IngestError(case_message(case_id, path, f"cannot read {what} ({first})",
                                       "the file is corrupt, truncated or not an image; re-export it")) from None
    dim = img.GetDimension()
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise IngestError(case_message(case_id, path, f"{what} has {img.GetNumberOfComponentsPerPixel()} components per voxel",
                                       "give a single-channel (scalar) volume"))
    if dim == 4:
        size = img.GetSize()
        if size[3] == 1:
            img = img[:, :, :, 0]
        else:
            raise IngestError(case_message(case_id, path, f"{what} is 4D (size {size})",
                                           "split the time/channel axis and list one 3D volume per row"))
    elif dim != 3:
        raise IngestError(case_message(case_id, path, f"{what} is {dim}D (size {img.GetSize()})", "radae needs 3D volumes"))
    vol = Volume.from_sitk(img, meta={"path": str(path)})
    if min(vol.array.shape) < 1:
        raise IngestError(case_message(case_id, path, f"{what} is empty (size {img.GetSize()})"))
    return vol


def check_spacing(vol: Volume, path: Path, case_id: str | None) -> None:
    sp = np.asarray(vol.spacing_mm)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise IngestError(case_message(case_id, path, f"invalid voxel spacing {tuple(sp)} mm", "fix the file header"))
    if np.any(sp > 30.0) or np.any(sp < 0.01):
        raise IngestError(case_message(case_id, path, f"implausible voxel spacing {tuple(np.round(sp, 4))} mm (allowed 0.01-30 mm)",
                                       "fix the file header (units?)"))


def geometry_differences(image: Volume, mask: Volume) -> list[str]:
    """Human-readable list of what differs between two grids (empty if they match within tolerance)."""
    diffs = []
    if image.size_xyz != mask.size_xyz:
        diffs.append(f"size image {image.size_xyz} vs mask {mask.size_xyz}")
    if not np.allclose(image.spacing_mm, mask.spacing_mm, rtol=SPACING_RTOL, atol=0):
        diffs.append(f"spacing image {tuple(np.round(image.spacing_mm, 4))} vs mask {tuple(np.round(mask.spacing_mm, 4))} mm")
    if not np.allclose(image.origin_mm, mask.origin_mm, atol=max(ORIGIN_ATOL_MM, 0.01 * min(image.spacing_mm))):
        diffs.append(f"origin image {tuple(np.round(image.origin_mm, 3))} vs mask {tuple(np.round(mask.origin_mm, 3))} mm")
    if not np.allclose(image.direction, mask.direction, atol=DIRECTION_ATOL):
        diffs.append("direction cosines differ")
    return diffs


def read_mask(
    path: str | Path,
    label: int | str | None,
    reference: Volume,
    image_path: str | Path | None = None,
    case_id: str | None = None,
) -> Volume:
    """Read a mask and return a uint8 0/1 Volume on ``reference``'s grid.

    ``label``: integer label value for label images / SEG segment number, or ROI name for RTSTRUCT;
    ``None`` means "any non-zero voxel" for label images.
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(case_message(case_id, path, "mask not found", "check the manifest path"))
    if path.is_file() and _is_dicom_file(path):
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        modality = getattr(ds, "Modality", "")
        if modality == "RTSTRUCT":
            from radae.io.rtstruct import rtstruct_to_mask

            if image_path is None or not Path(image_path).is_dir():
                raise IngestError(case_message(case_id, path, "RTSTRUCT mask needs a DICOM series folder as image"))
            return rtstruct_to_mask(path, label, Path(image_path), reference, case_id=case_id)
        if modality == "SEG":
            from radae.io.seg import seg_to_mask

            return seg_to_mask(path, label, reference, case_id=case_id)
        raise IngestError(case_message(case_id, path, f"DICOM mask has modality {modality!r}", "give an RTSTRUCT, SEG or label image"))
    vol = _read_file(path, case_id, what="mask")
    diffs = geometry_differences(reference, vol)
    if diffs:
        raise IngestError(case_message(case_id, path, "mask does not match image grid: " + "; ".join(diffs),
                                       "resample the mask onto the image or fix the header"))
    arr = vol.array
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise IngestError(case_message(case_id, path, "mask contains NaN/inf values"))
    if label is None or label == "":
        out = arr != 0
    else:
        try:
            lab = int(float(label))
        except (TypeError, ValueError):
            raise IngestError(case_message(case_id, path, f"mask_label {label!r} is not an integer label for a label image")) from None
        out = arr == lab
        if not out.any():
            present = np.unique(arr)
            shown = ", ".join(str(int(v)) for v in present[:10])
            raise IngestError(case_message(case_id, path, f"label {lab} not present in mask (labels present: {shown})",
                                           "fix mask_label in the manifest"))
    if not out.any():
        raise IngestError(case_message(case_id, path, "mask is empty (no foreground voxels)", "check the segmentation"))
    return Volume(out.astype(np.uint8), reference.spacing_mm, reference.origin_mm, reference.direction, {"path": str(path)})
