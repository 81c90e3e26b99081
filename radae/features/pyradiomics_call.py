"""One PyRadiomics call on radae Volumes, and the diagnostics radae keeps from it.

:func:`extract_volumes` hands PyRadiomics' extractor the image as PyRadiomics would have read it
(:func:`to_pyradiomics_image`) and radae's 0/1 mask, and splits the result into features and the kept diagnostics
(:data:`KEPT_DIAGNOSTICS`, for provenance). PyRadiomics' general-info pass computes those diagnostics and many more
(a SHA-1 of each image through ITK, whole-image and ROI statistics, centres of mass), about a fifth of a small
lesion's extraction time. When PyRadiomics neither resamples nor resegments nor corrects the mask, the kept ones
describe exactly the two images radae hands over, so radae computes them itself (:func:`original_diagnostics`:
the same values, tested against PyRadiomics') and runs the extractor without that pass; the features are
unchanged. Any other call (``keep_diagnostics=None`` as the IBSI check asks, resampling in the parameter file) keeps
PyRadiomics' own pass.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: diagnostics kept per lesion in provenance (suffix of PyRadiomics' ``diagnostics_<group>_<name>`` keys)
KEPT_DIAGNOSTICS = ("Hash", "Spacing", "Size", "VoxelNum", "VolumeNum", "BoundingBox")


def split_result(result: dict, keep: tuple[str, ...] | None = KEPT_DIAGNOSTICS) -> tuple[dict[str, float], dict[str, Any]]:
    """PyRadiomics' ordered result -> (features as floats, diagnostics whose name ends in ``keep``; None keeps all)."""
    feats: dict[str, float] = {}
    diag: dict[str, Any] = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            if keep is None or k.rsplit("_", 1)[-1] in keep:
                diag[k[len("diagnostics_"):]] = _jsonable(v)
            continue
        feats[k] = float(v)
    return feats, diag


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def to_pyradiomics_image(image):
    """A radae Volume as the SimpleITK image PyRadiomics would have read from disk.

    radae reads every image as float32; an image whose voxels are all whole numbers (CT in HU, most MR files) is
    handed over as 32-bit integers, as PyRadiomics sees such files when it reads them itself. It matters only when
    PyRadiomics resamples (``grid: original``): SimpleITK then returns integer voxels, exactly as in standalone
    PyRadiomics (and as IBSI asks for CT: interpolated grey levels rounded to integers).
    """
    import SimpleITK as sitk

    img = image.to_sitk()
    arr = image.array
    if arr.size and np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all():
        lo, hi = float(arr.min()), float(arr.max())
        if -(2**31) <= lo and hi < 2**31 and np.array_equal(arr, np.round(arr)):
            img = sitk.Cast(img, sitk.sitkInt32)
    return img


def computes_own_diagnostics(settings: dict, keep: tuple[str, ...] | None) -> bool:
    """True when the kept diagnostics are all "original" ones: PyRadiomics adds interpolated, resegmented or
    corrected ones (and the IBSI check wants every diagnostic) otherwise."""
    return (keep == KEPT_DIAGNOSTICS and settings.get("resampledPixelSpacing") is None
            and settings.get("resegmentRange") is None and not settings.get("correctMask"))


def original_diagnostics(image, mask, label: int = 1) -> dict[str, Any]:
    """PyRadiomics' ``Image-original_*`` and ``Mask-original_*`` diagnostics in :data:`KEPT_DIAGNOSTICS` of two
    SimpleITK images (mask label ``label`` present), as its general-info pass computes them: the SHA-1 of each pixel
    buffer (``sitk.Hash``; the mask's as UInt32), spacing, size, and the label's bounding box (x, y, z start, then
    sizes), voxel count and number of 26-connected parts."""
    import SimpleITK as sitk

    m = sitk.GetArrayViewFromImage(mask) == label
    lo, size = [], []
    for axis in (2, 1, 0):  # x, y, z
        hit = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(hit[0]))
        size.append(int(hit[-1] - hit[0] + 1))
    crop = m[lo[2]:lo[2] + size[2], lo[1]:lo[1] + size[1], lo[0]:lo[0] + size[0]]
    parts = sitk.ConnectedComponentImageFilter()
    parts.FullyConnectedOn()
    parts.Execute(sitk.GetImageFromArray(crop.astype(np.uint8)))
    out: dict[str, Any] = {}
    for name, img, dtype in (("Image", image, None), ("Mask", mask, np.uint32)):  # PyRadiomics casts masks to UInt32
        out[f"{name}-original_Hash"] = hashlib.sha1(np.ascontiguousarray(sitk.GetArrayViewFromImage(img), dtype)).hexdigest()
        out[f"{name}-original_Spacing"] = list(img.GetSpacing())
        out[f"{name}-original_Size"] = list(img.GetSize())
    out.update({"Mask-original_BoundingBox": lo + size, "Mask-original_VoxelNum": int(np.count_nonzero(crop)),
                "Mask-original_VolumeNum": int(parts.GetObjectCount())})
    return out


def extract_volumes(extractor, image, mask, keep_diagnostics: tuple[str, ...] | None = KEPT_DIAGNOSTICS
                    ) -> tuple[dict[str, float], dict[str, Any]]:
    """Run ``extractor`` on radae Volumes (image, mask 0/1); returns (features, kept diagnostics).

    ``extractor`` is this thread's own (:func:`radae.features.handcrafted.get_extractor`): its ``additionalInfo``
    setting is switched off for the one call when radae computes the diagnostics itself, and restored after."""
    img, msk = to_pyradiomics_image(image), mask.to_sitk()
    settings = extractor.settings
    if not computes_own_diagnostics(settings, keep_diagnostics):
        return split_result(extractor.execute(img, msk, label=1), keep_diagnostics)
    before = settings.get("additionalInfo", True)
    settings["additionalInfo"] = False
    try:
        result = extractor.execute(img, msk, label=1)
    finally:
        settings["additionalInfo"] = before
    feats, _ = split_result(result, ())
    return feats, original_diagnostics(img, msk) if before else {}
