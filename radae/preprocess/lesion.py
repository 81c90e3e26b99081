"""One lesion through the shared path: read -> check -> resample -> normalise -> crop -> cache.

Used by the preprocess stage (and by feature robustness re-extraction), so pretraining and extraction
see exactly the same voxels. A cache entry holds only what is derived from the images (arrays, crops, geometry,
hashes); case and patient ids come from the manifest row each time it is read. Results are cached under ``<cache>/preprocess/<key>/`` where the key is
the hash of (image content, mask content, lesion spec, preprocessing config, seed, code version).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radae.config import PreprocessConfig
from radae.util.errors import IngestError, PreprocessError, RadaeError, case_message
from radae.util.fsutil import OutputWriteError, atomic_path, atomic_write_text, ensure_dir
from radae.util.hashing import json_sha256
from radae.io import read_image, read_mask
from radae.io.nifti import nifti_payload_problem
from radae.io.readers import check_spacing
from radae.util.values import as_text
from radae.io.volume import Volume
from radae.preprocess import functional as F
from radae.preprocess.store import save_patches, save_roi

logger = logging.getLogger(__name__)

PREPROCESS_VERSION = 1
_CACHE_IRRELEVANT = {"n_jobs", "cache_dir"}


def preprocess_key(row: dict, cfg: PreprocessConfig, seed: int) -> str:
    spec = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _CACHE_IRRELEVANT}
    lesion = {k: as_text(row.get(k)) for k in ("image_sha256", "mask_sha256", "mask_label", "seed_x", "seed_y", "seed_z",
                                           "series_uid", "modality", "case_id")}
    return json_sha256({"v": PREPROCESS_VERSION, "cfg": spec, "lesion": lesion, "seed": seed})


def cache_folder(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "preprocess" / key[:2] / key


def _check_size(path: str, cfg: PreprocessConfig, case_id: str) -> None:
    p = Path(path)
    if p.is_dir():
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return  # read_image reports unreadable files with a proper message
    n = int(np.prod(reader.GetSize()))
    if n > cfg.max_voxels:
        raise IngestError(case_message(case_id, p, f"volume has {n:,} voxels, above preprocess.max_voxels={cfg.max_voxels:,}",
                                       "crop the volume around the lesion or raise the limit"))


def _write_nifti(vol: Volume, path: Path) -> None:
    """Atomic NIfTI write, verified: ITK's writer only prints to stderr when the disk fills up mid-file."""
    with atomic_path(path, suffix=".nii.gz") as tmp:
        try:
            sitk.WriteImage(vol.to_sitk(), str(tmp), True)
        except RuntimeError as e:
            raise OutputWriteError(f"file {path}: cannot write ({str(e).strip().splitlines()[-1][:120]}) "
                                   "-> free disk space or make the cache folder writable") from None
        if nifti_payload_problem(tmp) is not None:
            raise OutputWriteError(f"file {path}: the NIfTI writer left an incomplete file (disk full?); nothing was "
                                   "replaced -> free disk space, then run again")


#: a CT whose values are all >= 0 with a median above this is in raw scanner units, not Hounsfield units (air is
#: -1000 HU and most of a CT field of view is air or soft tissue near 0 HU; raw uint16 values sit near +1000)
CT_RAW_MEDIAN = 500.0


def check_ct_units(array: np.ndarray, path, case: str) -> None:
    """PreprocessError for a CT that cannot be in HU: minimum >= 0 and median > ``CT_RAW_MEDIAN``.

    A uint16 export without its Rescale Slope/Intercept applied looks like this; processed as HU it would sit far
    above any CT window (the lesion's mean ~1000 instead of ~0) and every intensity feature would be wrong.
    """
    lo = float(array.min())
    if lo < 0:
        return
    med = float(np.median(array))
    if med > CT_RAW_MEDIAN:
        raise PreprocessError(case_message(case, path, f"CT values are not Hounsfield units (minimum {lo:g} >= 0, median "
                                           f"{med:g} > {CT_RAW_MEDIAN:g}): raw scanner values without rescale?",
                                           "apply the DICOM Rescale Slope/Intercept (HU = value * slope + intercept, usually "
                                           "intercept -1024) when exporting, or re-export from the DICOM series"))


def preprocess_lesion(row: dict, cfg: PreprocessConfig, cache_dir: Path, seed: int) -> dict:
    """Process one manifest row; returns its rois.parquet index row. Raises RadaeError for bad input."""
    case = str(row["case_id"])
    key = preprocess_key(row, cfg, seed)
    folder = cache_folder(cache_dir, key)
    meta_path = folder / "meta.json"
    cached = _cached_meta(meta_path)
    if cached is not None:
        return {**_identity(row), **_image_fields(cached), "cache_hit": True}
    image, mask, warnings = _read_checked(row, cfg, case)
    voxel_count = int(mask.array.sum()) if mask is not None else 0
    resampled = F.resample(image, cfg.spacing_mm, cfg.interpolator)
    mask_r = F.resample_mask(mask, resampled, cfg.mask_interpolation) if mask is not None else None
    center = _lesion_centre(row, cfg, case, resampled, mask_r, voxel_count)
    try:
        norm = F.normalise(resampled.array, row["modality"], cfg.normalise, None if mask_r is None else mask_r.array)
    except PreprocessError as e:
        raise PreprocessError(case_message(case, row["image"], str(e),
                                           "check the image, or set preprocess.normalise.mr_region: volume")) from None
    if voxel_count and voxel_count < 8:
        logger.warning("%s", case_message(case, row["mask"], f"lesion has only {voxel_count} voxel(s) on the original grid",
                                          "shape and texture features of so few voxels are unreliable; check the mask"))
    if mask is not None and _touches_border(mask.array):
        logger.warning("%s", case_message(case, row["mask"], "lesion touches the image border (it may extend beyond the scan; "
                                          "the ROI is padded there)", "check the field of view covers the whole lesion"))
    size_zyx = tuple(cfg.roi_size_vox[::-1])
    ensure_dir(folder)
    paths = _write_crops(folder, cfg, seed, key, norm, resampled, mask_r, center, size_zyx)
    meta = {
        **paths,
        "image_sha256": as_text(row.get("image_sha256")), "mask_sha256": as_text(row.get("mask_sha256")), "preprocess_key": key,
        "orig_spacing_x": image.spacing_mm[0], "orig_spacing_y": image.spacing_mm[1], "orig_spacing_z": image.spacing_mm[2],
        "spacing_x": resampled.spacing_mm[0], "spacing_y": resampled.spacing_mm[1], "spacing_z": resampled.spacing_mm[2],
        "roi_z": size_zyx[0], "roi_y": size_zyx[1], "roi_x": size_zyx[2],
        "lesion_volume_ml": voxel_count * image.voxel_volume_ml, "voxel_count": voxel_count,
        "touches_border": bool(mask is not None and _touches_border(mask.array)),
        "warnings": "; ".join(warnings),
    }
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    return {**_identity(row), **meta, "cache_hit": False}


def _cached_meta(meta_path: Path) -> dict | None:
    """The cache entry's meta.json when it and the files it names exist, else None (recompute)."""
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if all(Path(meta[k]).exists() for k in ("roi_path", "radiomics_image") if meta.get(k)):
            return meta
    except (ValueError, KeyError, OSError):
        pass
    return None


def _read_checked(row: dict, cfg: PreprocessConfig, case: str):
    """``(image, mask or None, reader warnings)`` after the size, spacing, finiteness, constancy and CT-unit checks."""
    _check_size(row["image"], cfg, case)
    if as_text(row.get("mask")) and Path(row["mask"]).resolve() == Path(row["image"]).resolve():
        raise PreprocessError(case_message(case, row["mask"], "mask is the image file itself",
                                           "point the manifest's mask at the segmentation file"))
    image = read_image(row["image"], series_uid=as_text(row.get("series_uid")) or None, case_id=case)
    check_spacing(image, Path(row["image"]), case)
    if not np.all(np.isfinite(image.array)):
        bad = int((~np.isfinite(image.array)).sum())
        raise PreprocessError(case_message(case, row["image"], f"image has {bad} NaN/inf voxels",
                                           "fix or mask them before running radae"))
    if float(image.array.max()) == float(image.array.min()):
        raise PreprocessError(case_message(case, row["image"], f"image is constant (all voxels = {image.array.flat[0]:g})",
                                           "check the file is the intended scan"))
    lo, hi = float(image.array.min()), float(image.array.max())
    if lo == 0 and hi == 1 and np.all((image.array == 0) | (image.array == 1)):
        raise PreprocessError(case_message(case, row["image"], "image holds only the values 0 and 1: a mask, not a scan",
                                           "check the manifest's image and mask columns are not swapped"))
    if str(row["modality"]).upper() == "CT":
        check_ct_units(image.array, row["image"], case)
    mask = None
    warnings: list[str] = []  # what the readers did that the user should know (-> rois.parquet, lesion_provenance)
    if as_text(row.get("mask")):
        mask = read_mask(row["mask"], as_text(row.get("mask_label")) or None, image, image_path=row["image"], case_id=case)
        warnings += [str(w) for w in mask.meta.get("warnings", [])]
    return image, mask, warnings


def _lesion_centre(row: dict, cfg: PreprocessConfig, case: str, resampled, mask_r, voxel_count: int):
    """The ROI centre (z, y, x voxel index on the resampled grid): the mask's centroid, or the seed point."""
    if mask_r is not None:
        if not mask_r.array.any():
            raise PreprocessError(case_message(case, row["mask"], f"lesion ({voxel_count} voxels) vanishes when resampled to "
                                               f"{cfg.spacing_mm} mm", "use a finer preprocess.spacing_mm or mask_interpolation: nearest"))
        return F.mask_centroid_zyx(mask_r.array)
    seed_mm = [float(row[c]) for c in ("seed_x", "seed_y", "seed_z")]
    idx_xyz = resampled.physical_to_index(seed_mm)
    if np.any(idx_xyz < -0.5) or np.any(idx_xyz > np.asarray(resampled.size_xyz) - 0.5):
        raise PreprocessError(case_message(case, row["image"], f"seed point {seed_mm} mm lies outside the image",
                                           "seed_x/y/z are physical LPS millimetres; check sign and units"))
    return idx_xyz[::-1]


def _write_crops(folder: Path, cfg: PreprocessConfig, seed: int, key: str, norm, resampled, mask_r, center,
                 size_zyx) -> dict:
    """The ROI ``.npz``, the random patches and the PyRadiomics crops in the cache folder; returns their paths."""
    pad = float(norm.min())
    if cfg.crop_centre == "exact" and mask_r is not None:
        roi_img = F.crop_at_exact_centre(norm, center, size_zyx, pad_value=pad, order=1)
        roi_mask = F.crop_at_exact_centre(mask_r.array, center, size_zyx, 0, order=0)
    else:
        roi_img = F.crop_around_lesion(norm, center, size_zyx, pad_value=pad)
        roi_mask = (F.crop_around_lesion(mask_r.array, center, size_zyx, 0) if mask_r is not None
                    else np.zeros(size_zyx, np.uint8))
    center_mm = resampled.index_to_physical(np.asarray(center)[::-1])
    roi_path = folder / "roi.npz"
    save_roi(roi_path, roi_img, roi_mask, resampled.spacing_mm, center_mm)
    patches_path = ""
    if cfg.patches.per_volume > 0:
        rng = np.random.default_rng([seed, int(key[:12], 16)])
        fg = mask_r.array > 0 if mask_r is not None else F.body_mask(norm)
        centers = F.random_patch_centers(norm.shape, size_zyx, cfg.patches.per_volume, fg, cfg.patches.foreground_fraction, rng)
        patches = np.stack([F.crop_around_lesion(norm, c, size_zyx, pad_value=pad) for c in centers])
        patches_path = folder / "patches.npz"
        save_patches(patches_path, patches)
    rad_img_path = rad_mask_path = ""
    if mask_r is not None:
        rimg, rmask = F.bbox_crop(resampled, mask_r, cfg.radiomics_margin_vox)
        rad_img_path, rad_mask_path = folder / "radiomics_image.nii.gz", folder / "radiomics_mask.nii.gz"
        _write_nifti(rimg, rad_img_path)
        _write_nifti(rmask, rad_mask_path)
    return {"roi_path": str(roi_path), "patches_path": str(patches_path),
            "radiomics_image": str(rad_img_path), "radiomics_mask": str(rad_mask_path)}


#: index fields that come from the manifest row, never from the cache (a cache entry is shared by every run with
#: the same image content, whatever the patient is called there: pseudonymised, renamed, re-keyed)
IDENTITY_FIELDS = ("case_id", "patient_id", "modality")


def _identity(row: dict) -> dict:
    return {k: str(row[k]) for k in IDENTITY_FIELDS}


def _image_fields(meta: dict) -> dict:
    """A cached meta.json without identity (entries written before identity was kept out of the cache had it)."""
    return {k: v for k, v in meta.items() if k not in IDENTITY_FIELDS and k != "cache_hit"}


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any() or mask[:, :, 0].any() or mask[:, :, -1].any())


def safe_preprocess_lesion(args) -> tuple[dict | None, str | None, str | None]:
    """Process-pool wrapper: returns (row, None, None) or (None, message, file) for a RadaeError.

    ``file`` is the file the message is about (the mask for mask problems), for failures.csv.
    """
    row, cfg, cache_dir, seed = args
    try:
        return preprocess_lesion(row, cfg, cache_dir, seed), None, None
    except OutputWriteError:
        raise  # the cache cannot be written: a run-level problem, not this case's
    except RadaeError as e:
        mask = as_text(row.get("mask"))
        return None, str(e), mask if mask and f"file {mask}" in str(e) else str(row.get("image", ""))
    except (RuntimeError, ValueError, OSError, MemoryError) as e:  # library errors on odd files: keep the cohort going
        problem = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        return None, case_message(row.get("case_id"), row.get("image"), problem,
                                  "check the file opens in a viewer (e.g. 3D Slicer); if it does, report this message"), str(row.get("image", ""))
