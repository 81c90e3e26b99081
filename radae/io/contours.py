"""Planar contours (physical LPS mm) -> 0/1 mask on an image grid: pixel-centre membership, even-odd rule.

A pixel belongs to the ROI when its **centre** lies inside the contours of that slice, counted by the even-odd
(crossing-number) rule over *all* contours of the ROI on the slice: a contour inside another is a hole, disjoint
contours are separate islands, an island in a hole is filled again. No boundary pixels are added (OpenCV's
``fillPoly``, which rt-utils uses, fills every pixel the outline touches, so its masks are one pixel ring too large).

Boundary rule (half-open, as in scan-line filling): a centre exactly on a left/lower edge is inside, on a
right/upper edge outside; so an axis-aligned square from index (a, b) to (c, d) with integer corners holds exactly
(c - a) * (d - b) pixels, its area. Index coordinates are rounded to ``SNAP`` index units first, so a point that
should sit on a pixel centre but is 1e-9 off after the mm -> index transform still follows that rule.

The mm -> index transform is the image's own (origin, spacing, direction), the same as
:meth:`radae.io.volume.Volume.physical_to_index`; index (x, y, z) = (column, row, slice).
"""
from __future__ import annotations

import numpy as np

#: index coordinates are rounded to this many decimals before the inside test (float noise of the transform)
SNAP_DECIMALS = 6


def physical_to_index(points_mm: np.ndarray, origin_mm, spacing_mm, direction) -> np.ndarray:
    """(n, 3) LPS mm -> (n, 3) continuous index (x, y, z) of the grid (origin, spacing (x, y, z), 3x3 direction)."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    rel = np.asarray(points_mm, dtype=float).reshape(-1, 3) - np.asarray(origin_mm, dtype=float)
    return np.linalg.solve(d, rel.T).T / np.asarray(spacing_mm, dtype=float)


def fill_slice(polygons_xy: list[np.ndarray], shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) mask: pixel centres (x=i, y=j) inside ``polygons_xy`` by the even-odd rule.

    ``polygons_xy``: closed polygons, each an (n, 2) array of (x, y) in index units (the last vertex joins the first).
    Vectorised crossing number: every edge crossing the centre row y=j at x=xc toggles the pixels with i < xc; a
    pixel is inside when toggled an odd number of times. Edges count on rows ymin <= j < ymax (half-open).
    """
    rows, cols = int(shape_yx[0]), int(shape_yx[1])
    edges = [np.stack([p, np.roll(p, -1, axis=0)], axis=1) for p in
             (np.round(np.asarray(q, dtype=float).reshape(-1, 2), SNAP_DECIMALS) for q in polygons_xy) if len(p) >= 3]
    if not edges or rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype=bool)
    e = np.concatenate(edges)                          # (m, 2 ends, 2 coords)
    x0, y0, x1, y1 = e[:, 0, 0], e[:, 0, 1], e[:, 1, 0], e[:, 1, 1]
    lo = np.clip(np.ceil(np.minimum(y0, y1)), 0, rows).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(y0, y1)), 0, rows).astype(np.int64)   # rows lo..hi-1 are crossed
    n = np.maximum(hi - lo, 0)
    if not n.any():
        return np.zeros((rows, cols), dtype=bool)
    k = np.repeat(np.arange(len(e)), n)
    j = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + lo[k]).astype(np.int64)
    xc = x0[k] + (j - y0[k]) * (x1[k] - x0[k]) / (y1[k] - y0[k])          # y1 != y0: horizontal edges cross no row
    first_out = np.clip(np.ceil(np.round(xc, SNAP_DECIMALS)), 0, cols).astype(np.int64)  # pixels i < xc toggle
    marks = np.zeros((rows, cols + 1), dtype=np.int64)
    np.add.at(marks, (j, first_out), 1)
    toggles = np.cumsum(marks[:, ::-1], axis=1)[:, ::-1]  # toggles[:, i] = crossings with first_out >= i
    return (toggles[:, 1:] % 2).astype(bool)


def rasterise_contours(contours_mm: list[tuple[int, np.ndarray]], shape_zyx: tuple[int, int, int],
                       origin_mm, spacing_mm, direction) -> np.ndarray:
    """uint8 (z, y, x) mask of closed planar contours ``[(slice index k, (n, 3) points in LPS mm), ...]``.

    All contours given for slice k are filled together by the even-odd rule (:func:`fill_slice`); the slice of each
    contour is chosen by the caller (the contour's points are projected in-plane: their z index is not used).
    """
    out = np.zeros(tuple(int(s) for s in shape_zyx), dtype=np.uint8)
    by_slice: dict[int, list[np.ndarray]] = {}
    for k, pts in contours_mm:
        by_slice.setdefault(int(k), []).append(physical_to_index(pts, origin_mm, spacing_mm, direction)[:, :2])
    for k, polys in by_slice.items():
        out[k] = fill_slice(polys, out.shape[1:])
    return out
