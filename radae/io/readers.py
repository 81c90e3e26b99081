"""Dispatch by file kind; all geometry checks between image and mask live here."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radae.util.errors import IngestError, case_message
from radae.io.fastnifti import read_plain_nifti
from radae.io.integrity import is_nifti, nifti_problem
from radae.io.metaimage import metaimage_problem
from radae.io.nifti import SHEAR_HINT, direction_problem, fmt_values
from radae.io.volume import Volume

logger = logging.getLogger(__name__)

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 1e-2
DIRECTION_ATOL = 1e-3
#: a label image with more distinct values than this is an intensity image (a CT given as mask), not labels
MAX_MASK_LABELS = 1000


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

        vol = _oriented(read_dicom_series(path, series_uid=series_uid, case_id=case_id), path, case_id, "image")
    else:
        vol = _read_file(path, case_id, what="image")  # checked by _oriented too
    arr = vol.array
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32:
        big = float(np.abs(arr).max()) if arr.size else 0.0
        if big > float(np.finfo(np.float32).max):  # float64 beyond float32's range would become inf silently
            raise IngestError(case_message(case_id, path, f"image holds values up to {big:.3g}, beyond float32's range "
                                           f"({np.finfo(np.float32).max:.3g})", "rescale the intensities (wrong units?)"))
        arr = arr.astype(np.float32)
    return Volume(arr, vol.spacing_mm, vol.origin_mm, vol.direction, vol.meta)


def _read_file(path: Path, case_id: str | None, what: str) -> Volume:
    plain = read_plain_nifti(path) if is_nifti(path) else None  # intact and finite: checked while it was read
    if plain is not None:
        return _oriented(plain, path, case_id, what)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1][:160] if str(e).strip() else "unknown reader error"
        meta_problem = metaimage_problem(path) if path.suffix.lower() in (".mha", ".mhd") else None
        if meta_problem is not None:
            raise IngestError(case_message(case_id, path, f"cannot read {what}: {meta_problem[0]}", meta_problem[1])) from None
        if "spacing" in first.lower():
            raise IngestError(case_message(case_id, path, f"cannot read {what}: invalid voxel spacing in the header ({first})",
                                           "fix the file header (voxel sizes must be > 0 mm)")) from None
        raise IngestError(case_message(case_id, path, f"cannot read {what} ({first})",
                                       "the file is corrupt, truncated or not an image; re-export it")) from None
    nonfinite = 0
    if is_nifti(path):
        found = nifti_problem(path)
        if found is not None and found[0] == "nonfinite":
            nonfinite = int(found[1].split()[0])
        elif found is not None:
            hint = ("the file was cut off or damaged (interrupted copy or download?); copy or export it again"
                    if found[0] == "truncated" else SHEAR_HINT if "sform" in found[1] else "fix the file header (voxel sizes, dimensions)")
            raise IngestError(case_message(case_id, path, f"cannot read {what}: {found[1]}", hint))
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
    vol = _oriented(Volume.from_sitk(img, meta={"path": str(path)}), path, case_id, what)
    if min(vol.array.shape) < 1:
        raise IngestError(case_message(case_id, path, f"{what} is empty (size {img.GetSize()})", "re-export the volume"))
    if np.issubdtype(vol.array.dtype, np.floating):
        nonfinite = max(nonfinite, int(np.count_nonzero(~np.isfinite(vol.array))))
    if nonfinite:
        hint = "fix or mask them before running radae" if what == "image" else "a mask must hold integer labels; re-export it"
        raise IngestError(case_message(case_id, path, f"{what} has {nonfinite} NaN/inf voxels", hint))
    return vol


def _oriented(vol: Volume, path: Path, case_id: str | None, what: str) -> Volume:
    sheared = direction_problem(vol.direction)
    if sheared:
        raise IngestError(case_message(case_id, path, f"{what}: {sheared}", SHEAR_HINT))
    return vol


def check_spacing(vol: Volume, path: Path, case_id: str | None) -> None:
    sp = np.asarray(vol.spacing_mm)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise IngestError(case_message(case_id, path, f"invalid voxel spacing {fmt_values(sp)} mm", "fix the file header"))
    if np.any(sp > 30.0) or np.any(sp < 0.01):
        raise IngestError(case_message(case_id, path, f"implausible voxel spacing {fmt_values(sp)} mm (allowed 0.01-30 mm)",
                                       "fix the file header (units?)"))


def geometry_differences(image: Volume, mask: Volume) -> list[str]:
    """Human-readable list of what differs between two grids (empty if they match within tolerance)."""
    diffs = []
    if image.size_xyz != mask.size_xyz:
        diffs.append(f"size image {image.size_xyz} vs mask {mask.size_xyz}")
    if not np.allclose(image.spacing_mm, mask.spacing_mm, rtol=SPACING_RTOL, atol=0):
        diffs.append(f"spacing image {fmt_values(image.spacing_mm)} vs mask {fmt_values(mask.spacing_mm)} mm")
    if not np.allclose(image.origin_mm, mask.origin_mm, atol=max(ORIGIN_ATOL_MM, 0.01 * min(image.spacing_mm))):
        diffs.append(f"origin image {fmt_values(image.origin_mm, 3)} vs mask {fmt_values(mask.origin_mm, 3)} mm")
    if not np.allclose(image.direction, mask.direction, atol=DIRECTION_ATOL):
        diffs.append(f"direction image {fmt_values(image.direction, 3)} vs mask {fmt_values(mask.direction, 3)}")
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
                raise IngestError(case_message(case_id, path, "RTSTRUCT mask needs a DICOM series folder as image",
                                               "point the manifest's image at the DICOM series the RTSTRUCT was drawn on"))
            return rtstruct_to_mask(path, label, Path(image_path), reference, case_id=case_id)
        if modality == "SEG":
            from radae.io.seg import seg_to_mask

            return seg_to_mask(path, label, reference, case_id=case_id)
        raise IngestError(case_message(case_id, path, f"DICOM mask has modality {modality!r}", "give an RTSTRUCT, SEG or label image"))
    vol = _read_file(path, case_id, what="mask")
    warnings: list[str] = []
    diffs = geometry_differences(reference, vol)
    if diffs:
        from radae.io.regrid import same_physical_grid, onto_grid_nearest

        if not same_physical_grid(reference, vol):
            raise IngestError(case_message(case_id, path, "mask does not match image grid: " + "; ".join(diffs),
                                           "resample the mask onto the image or fix the header"))
        vol = onto_grid_nearest(vol, reference)
        warnings.append(f"mask grid differs from the image's ({'; '.join(diffs)}) but covers the same voxel centres; "
                        "resampled onto the image grid (nearest neighbour, no voxel moved)")
        logger.warning("%s", case_message(case_id, path, warnings[-1], "check the mask was exported from this image"))
    arr = vol.array
    _check_label_values(arr, path, case_id)
    if label is None or label == "":
        out = arr != 0
    else:
        try:
            labf = float(label)
            if not np.isfinite(labf) or labf != int(labf):
                raise ValueError(label)
            lab = int(labf)
        except (TypeError, ValueError):
            raise IngestError(case_message(case_id, path, f"mask_label {label!r} is not an integer label for a label image",
                                           "give the label's number (ROI names only work for RTSTRUCT masks)")) from None
        out = arr == lab
        if not out.any() and not arr.any():
            raise IngestError(case_message(case_id, path, "mask is empty (no foreground voxels)", "check the segmentation"))
        if not out.any():
            present = np.unique(arr)
            shown = ", ".join(str(int(v)) for v in present[:10])
            raise IngestError(case_message(case_id, path, f"label {lab} not present in mask (labels present: {shown})",
                                           "fix mask_label in the manifest"))
    if not out.any():
        raise IngestError(case_message(case_id, path, "mask is empty (no foreground voxels)", "check the segmentation"))
    return Volume(out.astype(np.uint8), reference.spacing_mm, reference.origin_mm, reference.direction,
                  {"path": str(path), **({"warnings": warnings} if warnings else {})})


def _check_label_values(arr: np.ndarray, path: Path, case_id: str | None) -> None:
    """IngestError unless ``arr`` can be a label image: finite, integer-valued, at most ``MAX_MASK_LABELS`` labels."""
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise IngestError(case_message(case_id, path, "mask contains NaN/inf values", "a mask must hold integer labels; re-export it"))
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        frac = np.unique(arr[arr != np.round(arr)])
        shown = ", ".join(f"{float(v):g}" for v in frac[:5]) + (", ..." if len(frac) > 5 else "")
        raise IngestError(case_message(case_id, path, f"mask holds non-integer values ({shown}; {arr.dtype} voxels): a "
                                       "probability map or an interpolated mask, not a label image",
                                       "threshold it (e.g. >= 0.5) and save it as integer labels"))
    n_values = np.unique(arr).size if int(arr.max()) - int(arr.min()) >= MAX_MASK_LABELS else 0  # cheap for uint8 masks
    if n_values > MAX_MASK_LABELS:
        raise IngestError(case_message(case_id, path, f"mask holds {n_values:,} distinct values ({float(arr.min()):g} "
                                       f"to {float(arr.max()):g}): an intensity image (the scan itself?), not a label map",
                                       "point the manifest's mask at the segmentation file"))
