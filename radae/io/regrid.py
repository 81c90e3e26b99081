"""A mask on another voxel grid that covers exactly the image's voxel centres (e.g. flipped along x).

Some exporters write a mask with its own axis order or sign (direction ``(-1, 0, 0, ...)`` and the origin at the
other end of the x axis): every mask voxel still sits on an image voxel centre, only the header describes the grid
differently. Such a mask is moved onto the image grid by nearest neighbour, which here moves no voxel; any other
grid difference (a shift, another spacing, a partial overlap) is refused by :func:`radae.io.readers.read_mask`.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from radae.io.volume import Volume

#: how far (in image voxels) a mask voxel centre may sit from an image voxel centre
CENTRE_TOL_VOX = 0.01
#: tolerance on the entries of the index-to-index map (a signed permutation)
MAP_TOL = 1e-3


def _index_map(image: Volume, mask: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(A, t) with image index (x, y, z) = A @ mask index + t."""
    d_img = np.asarray(image.direction, float).reshape(3, 3) * np.asarray(image.spacing_mm, float)
    d_msk = np.asarray(mask.direction, float).reshape(3, 3) * np.asarray(mask.spacing_mm, float)
    a = np.linalg.solve(d_img, d_msk)
    t = np.linalg.solve(d_img, np.asarray(mask.origin_mm, float) - np.asarray(image.origin_mm, float))
    return a, t


def same_physical_grid(image: Volume, mask: Volume) -> bool:
    """Whether ``mask``'s voxel centres are exactly ``image``'s (same set of points, any axis order or sign)."""
    try:
        a, t = _index_map(image, mask)
    except np.linalg.LinAlgError:
        return False
    if not np.all(np.isclose(np.abs(a), np.round(np.abs(a)), atol=MAP_TOL)):
        return False
    perm = np.round(a)
    if not (np.all(np.abs(perm).sum(axis=0) == 1) and np.all(np.abs(perm).sum(axis=1) == 1)):
        return False  # not a signed permutation: other spacing, rotation or shear
    if not np.allclose(t, np.round(t), atol=CENTRE_TOL_VOX):
        return False  # shifted by a fraction of a voxel
    corners = np.array([perm @ np.array(c) + np.round(t) for c in
                        np.stack(np.meshgrid(*[[0, n - 1] for n in mask.size_xyz], indexing="ij"), -1).reshape(-1, 3)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return bool(np.all(lo == 0) and np.all(hi == np.asarray(image.size_xyz) - 1))


def onto_grid_nearest(mask: Volume, image: Volume) -> Volume:
    """``mask`` resampled onto ``image``'s grid by nearest neighbour (exact when :func:`same_physical_grid`)."""
    ref = sitk.Image([int(n) for n in image.size_xyz], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in image.spacing_mm))
    ref.SetOrigin(tuple(float(o) for o in image.origin_mm))
    ref.SetDirection(tuple(float(d) for d in image.direction))
    src = mask.to_sitk()
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, src.GetPixelID())
    return Volume.from_sitk(out, meta=dict(mask.meta))
