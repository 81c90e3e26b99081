"""Pure preprocessing functions: resample, normalise, crop. Units are in the names.

Arrays are (z, y, x); sizes and spacings passed as (x, y, z) like SimpleITK, unless a name says ``_zyx``.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from radae.config import NormaliseConfig
from radae.util.errors import PreprocessError
from radae.io.volume import Volume

_INTERP = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


def resampled_size(size_xyz, spacing_mm, new_spacing_mm) -> tuple[int, int, int]:
    """Grid size covering the same physical extent: round(size * spacing / new_spacing), at least 1."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(size_xyz, spacing_mm, new_spacing_mm))  # type: ignore[return-value]


def resample(volume: Volume, spacing_mm, interpolator: str = "linear", size_xyz=None, default_value: float | None = None) -> Volume:
    """Resample to ``spacing_mm`` (x, y, z) keeping origin and direction; extent preserved by rounding."""
    spacing_mm = tuple(float(s) for s in spacing_mm)
    size = size_xyz or resampled_size(volume.size_xyz, volume.spacing_mm, spacing_mm)
    img = volume.to_sitk()
    if default_value is None:
        default_value = float(volume.array.min()) if volume.array.size else 0.0
    out = sitk.Resample(img, [int(s) for s in size], sitk.Transform(), _INTERP[interpolator], volume.origin_mm,
                        spacing_mm, volume.direction, float(default_value), img.GetPixelID())
    return Volume.from_sitk(out, meta=volume.meta)


def resample_like(volume: Volume, reference: Volume, interpolator: str = "linear", default_value: float = 0.0) -> Volume:
    """Resample onto exactly ``reference``'s grid."""
    out = sitk.Resample(volume.to_sitk(), reference.to_sitk(), sitk.Transform(), _INTERP[interpolator], float(default_value))
    return Volume.from_sitk(out, meta=volume.meta)


def resample_mask(mask: Volume, reference: Volume, mode: str = "linear_threshold") -> Volume:
    """Mask onto ``reference``'s grid. IBSI style: linear interpolation of the 0/1 mask, then >= 0.5."""
    m = mask.with_array(mask.array.astype(np.float32))
    if mode == "nearest":
        out = resample_like(m, reference, "nearest")
        arr = out.array > 0.5
    else:
        out = resample_like(m, reference, "linear")
        arr = out.array >= 0.5
    return Volume(arr.astype(np.uint8), reference.spacing_mm, reference.origin_mm, reference.direction, mask.meta)


def body_mask(image: np.ndarray) -> np.ndarray:
    """Foreground (body) by Otsu threshold; falls back to everything if Otsu gives nothing."""
    img = sitk.GetImageFromArray(image.astype(np.float32))
    try:
        fg = sitk.GetArrayFromImage(sitk.OtsuThreshold(img, 0, 1)).astype(bool)
    except RuntimeError:
        fg = np.ones(image.shape, bool)
    if fg.sum() < 0.01 * fg.size:
        fg = np.ones(image.shape, bool)
    return fg


def normalise(image: np.ndarray, modality: str, cfg: NormaliseConfig, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-modality intensity normalisation (see NormaliseConfig). Returns float32.

    CT: clip HU to [hu_min, hu_max], scale to [0, 1]. MR: z-score with mean/std from ``mr_region``
    (lesion mask, Otsu body, or whole volume). PET: SUV, clipped at suv_max, divided by suv_scale.
    """
    x = image.astype(np.float32, copy=False)
    m = modality.upper()
    if m == "CT":
        x = np.clip(x, cfg.hu_min, cfg.hu_max)
        return ((x - cfg.hu_min) / (cfg.hu_max - cfg.hu_min)).astype(np.float32)
    if m == "PET":
        if cfg.suv_max is not None:
            x = np.clip(x, 0.0, cfg.suv_max)
        return (x / cfg.suv_scale).astype(np.float32)
    if m == "MR" or cfg.other == "zscore":
        region = cfg.mr_region if m == "MR" else "volume"
        if region == "roi" and mask is not None and mask.any():
            sel = x[mask.astype(bool)]
        elif region == "body":
            sel = x[body_mask(x)]
        else:
            sel = x.ravel()
        mu, sd = float(sel.mean()), float(sel.std())
        if not np.isfinite(sd) or sd < 1e-8:
            raise PreprocessError(f"image intensities are constant in the {region} region (std {sd:.3g}); cannot z-score")
        return ((x - mu) / sd).astype(np.float32)
    if cfg.other == "minmax":
        lo, hi = float(x.min()), float(x.max())
        if hi - lo < 1e-8:
            raise PreprocessError("image intensities are constant; cannot min-max scale")
        return ((x - lo) / (hi - lo)).astype(np.float32)
    return x.astype(np.float32)


def mask_centroid_zyx(mask: np.ndarray) -> np.ndarray:
    """Centre of mass of a 0/1 mask in continuous voxel indices (z, y, x)."""
    idx = np.argwhere(mask > 0)
    if len(idx) == 0:
        raise PreprocessError("mask is empty after resampling (lesion smaller than the target voxel?)")
    return idx.mean(axis=0)


def crop_around_lesion(array: np.ndarray, center_zyx, size_vox_zyx, pad_value: float = 0.0) -> np.ndarray:
    """Fixed-size crop whose centre voxel is ``round(center_zyx)``; pads with ``pad_value`` outside the volume.

    For even sizes the centre voxel is at index ``size // 2`` of the crop.
    """
    center = np.round(np.asarray(center_zyx, dtype=float)).astype(int)
    size = np.asarray(size_vox_zyx, dtype=int)
    start = center - size // 2
    out = np.full(tuple(size), pad_value, dtype=array.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + size, array.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = array[
        src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]
    ]
    return out


def crop_at_exact_centre(array: np.ndarray, center_zyx, size_vox_zyx, pad_value: float = 0.0, order: int = 1) -> np.ndarray:
    """Fixed-size crop centred on the continuous ``center_zyx`` by sub-voxel (``order``-spline) resampling.

    Crop voxel ``i`` samples the array at ``center - size // 2 + i`` (per axis), so for an integral centre this
    equals :func:`crop_around_lesion` bit for bit; a centre that moves by a fraction of a voxel (a mask eroded on
    one side) moves the crop with it. Outside the volume: ``pad_value``. Masks: ``order=0`` keeps them 0/1.
    """
    from scipy import ndimage

    size = np.asarray(size_vox_zyx, dtype=int)
    center = np.asarray(center_zyx, dtype=float)
    if np.allclose(center, np.round(center), atol=1e-6, rtol=0.0):
        return crop_around_lesion(array, center, size_vox_zyx, pad_value)
    start = center - size // 2
    grid = np.meshgrid(*[start[a] + np.arange(size[a]) for a in range(3)], indexing="ij")
    out = ndimage.map_coordinates(np.asarray(array, dtype=np.float32), grid, order=order, mode="constant", cval=float(pad_value),
                                  prefilter=False)
    # linear sampling near the border blends in pad_value only where the sample point lies outside the volume
    return out.astype(array.dtype) if order == 0 else out.astype(np.float32)


def bbox_crop(volume: Volume, mask: Volume, margin_vox: int) -> tuple[Volume, Volume]:
    """Crop image and mask to the lesion bounding box plus ``margin_vox`` (clipped to the volume), geometry kept."""
    idx = np.argwhere(mask.array > 0)
    if len(idx) == 0:
        raise PreprocessError("mask is empty after resampling")
    lo = np.maximum(idx.min(axis=0) - margin_vox, 0)
    hi = np.minimum(idx.max(axis=0) + margin_vox + 1, mask.array.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    origin = volume.index_to_physical(lo[::-1])
    img = Volume(np.ascontiguousarray(volume.array[sl]), volume.spacing_mm, tuple(origin), volume.direction, volume.meta)
    msk = Volume(np.ascontiguousarray(mask.array[sl]), volume.spacing_mm, tuple(origin), volume.direction, mask.meta)
    return img, msk


def random_patch_centers(shape_zyx, size_zyx, n: int, foreground: np.ndarray | None, fg_fraction: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` patch centres: a ``fg_fraction`` share on foreground voxels, the rest uniform inside the volume."""
    shape = np.asarray(shape_zyx)
    half = np.asarray(size_zyx) // 2
    lo = np.minimum(half, shape - 1)
    hi = np.maximum(shape - (np.asarray(size_zyx) - half), lo)
    centers = []
    fg_idx = np.argwhere(foreground) if foreground is not None and foreground.any() else None
    for _ in range(n):
        if fg_idx is not None and rng.random() < fg_fraction:
            centers.append(fg_idx[rng.integers(len(fg_idx))])
        else:
            centers.append([rng.integers(a, b + 1) for a, b in zip(lo, hi)])
    return np.asarray(centers, dtype=int).reshape(n, 3)
