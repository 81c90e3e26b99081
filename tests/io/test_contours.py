"""radae.io.contours: pixel-centre membership by the even-odd rule, on synthetic polygons with known areas."""
from __future__ import annotations

import numpy as np
from matplotlib.path import Path as MplPath

from radae.io.contours import fill_slice, physical_to_index, rasterise_contours


def sq(x0, y0, x1, y1):
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)


def test_square_off_the_centres_holds_the_centres_inside():
    m = fill_slice([sq(1.5, 2.5, 5.5, 4.5)], (8, 10))
    expect = np.zeros((8, 10), bool)
    expect[3:5, 2:6] = True  # centres x 2..5, y 3..4
    assert np.array_equal(m, expect) and int(m.sum()) == 4 * 2


def test_square_through_pixel_centres_holds_its_area():
    """Corners on centres: lower-index edges in, upper-index edges out, so the count is the area."""
    m = fill_slice([sq(2, 3, 7, 6)], (10, 10))
    assert int(m.sum()) == 5 * 3
    assert m[3, 2] and m[5, 6] and not m[6, 2] and not m[3, 7]
    assert np.array_equal(np.argwhere(m).min(0), [3, 2]) and np.array_equal(np.argwhere(m).max(0), [5, 6])


def test_float_noise_on_centres_does_not_change_the_count():
    for eps in (1e-9, -1e-9):
        assert int(fill_slice([sq(2 + eps, 3 - eps, 7 - eps, 6 + eps)], (10, 10)).sum()) == 15


def test_orientation_of_the_polygon_does_not_matter():
    a = fill_slice([sq(1.2, 1.7, 6.3, 5.1)], (8, 8))
    assert np.array_equal(a, fill_slice([sq(1.2, 1.7, 6.3, 5.1)[::-1]], (8, 8))) and int(a.sum()) == 5 * 4


def test_square_with_a_square_hole():
    m = fill_slice([sq(1, 1, 11, 11), sq(4, 4, 8, 8)], (12, 12))
    assert int(m.sum()) == 10 * 10 - 4 * 4
    assert m[1, 1] and not m[4, 4] and not m[7, 7] and m[8, 8] and m[3, 3]


def test_two_islands_and_an_island_in_a_hole():
    two = fill_slice([sq(0, 0, 3, 3), sq(5.5, 5.5, 9.5, 8.5)], (10, 10))
    assert int(two.sum()) == 3 * 3 + 4 * 3 and int(two[:4, :4].sum()) == 9
    nested = fill_slice([sq(0, 0, 10, 10), sq(2, 2, 8, 8), sq(4, 4, 6, 6)], (10, 10))
    assert int(nested.sum()) == 100 - 36 + 4 and nested[4, 4] and not nested[2, 2]


def test_triangle_and_overlapping_contours_xor():
    tri = fill_slice([np.array([(0, 0), (4, 0), (0, 4)], float)], (6, 6))
    assert int(tri.sum()) == 4 + 3 + 2 + 1  # rows 0..3, x + y < 4
    overlap = fill_slice([sq(0, 0, 4, 4), sq(2, 2, 6, 6)], (8, 8))
    assert int(overlap.sum()) == 16 + 16 - 2 * 4  # even-odd: the overlap is a hole


def test_polygon_beyond_the_grid_is_clipped():
    m = fill_slice([sq(-3.5, -2.5, 2.5, 20.5)], (6, 5))
    assert int(m.sum()) == 3 * 6 and m[:, :3].all() and not m[:, 3:].any()


def test_degenerate_input_is_empty():
    assert not fill_slice([], (4, 4)).any()
    assert not fill_slice([np.array([(1, 1), (3, 1)], float)], (4, 4)).any()   # two points: no polygon
    assert not fill_slice([sq(1, 1, 3, 1)], (4, 4)).any()                        # zero area


def test_random_polygons_match_matplotlib_off_the_boundary():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:30, 0:25]
    centres = np.c_[xx.ravel(), yy.ravel()].astype(float)
    for _ in range(100):
        polys = [rng.uniform(-3, 33, (int(rng.integers(3, 12)), 2)) for _ in range(int(rng.integers(1, 4)))]
        ref = np.zeros(len(centres), bool)
        for p in polys:
            ref ^= MplPath(p).contains_points(centres)
        assert np.array_equal(fill_slice(polys, (30, 25)), ref.reshape(30, 25))


def test_rasterise_uses_the_image_geometry():
    """Sagittal-like direction, anisotropic spacing: a square given in mm lands on its index-space pixels."""
    direction = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # index x -> LPS y, index y -> LPS z, index z -> LPS x
    d = np.asarray(direction).reshape(3, 3)
    origin, spacing = np.array([10.0, -20.0, 5.0]), np.array([0.5, 2.0, 3.0])

    def mm(idx):
        return origin + (d @ (np.asarray(idx, float) * spacing).T).T

    corners = np.array([(1.5, 0.5, 2), (4.5, 0.5, 2), (4.5, 2.5, 2), (1.5, 2.5, 2)], float)
    assert np.allclose(physical_to_index(mm(corners), origin, spacing, direction), corners)
    arr = rasterise_contours([(2, mm(corners)), (0, mm(corners + [0, 1, -2]))], (4, 5, 6), origin, spacing, direction)
    assert arr.dtype == np.uint8 and int(arr.sum()) == 12 and int(arr[1].sum()) == 0 and int(arr[3].sum()) == 0
    assert arr[2, 1:3, 2:5].all() and arr[0, 2:4, 2:5].all()
