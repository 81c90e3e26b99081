"""Pure preprocessing functions: exact resampled grids, IBSI mask resampling, centred crops, normalisation."""
import numpy as np
import pytest

from radae.config import NormaliseConfig
from radae.util.errors import PreprocessError
from radae.io.volume import Volume
from radae.preprocess import functional as F


def _volume(size_xyz, spacing, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), fill=None):
    shape = tuple(size_xyz[::-1])
    arr = np.zeros(shape, np.float32) if fill is None else fill(shape)
    return Volume(arr, tuple(map(float, spacing)), tuple(map(float, origin)), tuple(map(float, direction)))


@pytest.mark.parametrize(
    "size_xyz, spacing, target, expected_xyz",
    [
        ((30, 20, 10), (0.5, 1.0, 3.0), (1.5, 1.5, 1.5), (10, 13, 20)),  # 20 / 1.5 = 13.3 -> 13; 10 * 3 / 1.5 = 20
        ((16, 16, 16), (1.0, 1.0, 1.0), (0.5, 0.5, 2.0), (32, 32, 8)),
        ((7, 9, 11), (0.9, 0.9, 2.5), (0.9, 0.9, 2.5), (7, 9, 11)),  # same grid stays the same
        ((40, 30, 12), (0.7, 0.7, 5.0), (1.0, 2.0, 1.0), (28, 10, 60)),
    ],
)
def test_resample_gives_exact_spacing_and_shape(size_xyz, spacing, target, expected_xyz):
    vol = _volume(size_xyz, spacing, origin=(-12.5, 40.0, 3.25), direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))
    out = F.resample(vol, target)
    assert out.spacing_mm == tuple(target)  # exactly, not approximately
    assert out.size_xyz == expected_xyz
    assert out.array.shape == tuple(expected_xyz[::-1])
    assert out.origin_mm == vol.origin_mm and out.direction == vol.direction
    assert F.resampled_size(size_xyz, spacing, target) == expected_xyz
    # physical extent kept to within half an output voxel per axis
    extent_in = np.asarray(size_xyz) * np.asarray(spacing)
    extent_out = np.asarray(expected_xyz) * np.asarray(target)
    assert np.all(np.abs(extent_in - extent_out) <= np.asarray(target) / 2 + 1e-9)


def test_linear_resampling_reproduces_a_linear_ramp_exactly():
    # voxel value = physical x (mm) on an anisotropic grid; linear interpolation must give x at every new centre
    sp = (0.8, 1.2, 2.5)
    origin = (-10.0, 5.0, 2.0)
    vol = _volume((25, 6, 5), sp, origin, fill=lambda s: np.broadcast_to(origin[0] + np.arange(s[2]) * sp[0], s).astype(np.float32))
    out = F.resample(vol, (0.5, 1.2, 2.5), "linear")
    x_mm = origin[0] + np.arange(out.size_xyz[0]) * 0.5
    inside = x_mm <= origin[0] + (25 - 1) * sp[0]  # beyond the last centre the resampler extrapolates nothing
    np.testing.assert_allclose(out.array[2, 3, inside], x_mm[inside], atol=1e-4)


def test_mask_resampling_is_ibsi_linear_then_threshold():
    m = np.zeros((20, 20, 20), np.float32)
    m[5:15, 5:15, 5:15] = 1  # voxel centres 5..14 mm on a 1 mm grid
    mask = Volume(m.astype(np.uint8), (1.0, 1.0, 1.0))
    ref = F.resample(Volume(m, (1.0, 1.0, 1.0)), (1.1, 1.1, 1.1))
    # new centres 0, 1.1, ...: 4.4 mm interpolates to 0.4 (out), 5.5 .. 13.2 to 1, 14.3 to 0.7 (in): 9 per axis.
    # Trilinear: on an edge where two axes sit at 14.3 mm the value is 0.7^2 = 0.49 (out), at the corner 0.343 (out).
    lin = F.resample_mask(mask, ref, "linear_threshold")
    near = F.resample_mask(mask, ref, "nearest")
    assert lin.array.dtype == np.uint8 and set(np.unique(lin.array)) == {0, 1}
    assert int(near.array.sum()) == 9**3
    assert int(lin.array.sum()) == 9**3 - 3 * 8 - 1
    idx = np.argwhere(lin.array)
    assert idx.min() == 5 and idx.max() == 13
    assert lin.spacing_mm == ref.spacing_mm and lin.array.shape == ref.array.shape


@pytest.mark.parametrize(
    "center, shape",
    [((10, 12, 14), (20, 24, 28)), ((0, 0, 0), (20, 24, 28)), ((19, 23, 27), (20, 24, 28)), ((2.4, 20.6, 13.5), (20, 24, 28))],
)
def test_crop_is_centred_and_padded_at_borders(center, shape):
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    size = (9, 10, 11)
    crop = F.crop_around_lesion(arr, center, size, pad_value=-7.0)
    assert crop.shape == size
    c = np.round(np.asarray(center)).astype(int)
    mid = np.asarray(size) // 2
    assert crop[tuple(mid)] == arr[tuple(c)]  # the centre voxel lands at size // 2
    # every crop voxel is either the original voxel at the same offset or padding outside the volume
    for idx in np.ndindex(*size):
        src = c - mid + np.asarray(idx)
        inside = np.all(src >= 0) and np.all(src < shape)
        assert crop[idx] == (arr[tuple(src)] if inside else -7.0)


def test_crop_of_a_lesion_centres_its_centroid_within_one_voxel():
    rng = np.random.default_rng(3)
    for _ in range(20):
        shape = tuple(rng.integers(12, 30, 3))
        c = [rng.uniform(0, n - 1) for n in shape]
        zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        mask = ((zz - c[0]) ** 2 / 4 + (yy - c[1]) ** 2 / 9 + (xx - c[2]) ** 2 / 6.25 <= 1).astype(np.uint8)
        if not mask.any():
            continue
        centroid = F.mask_centroid_zyx(mask)
        crop = F.crop_around_lesion(mask, centroid, (16, 16, 16), 0)
        assert crop.sum() == mask.sum()  # the whole lesion fits; padding where it is cut by the border
        offset = F.mask_centroid_zyx(crop) - np.array([8, 8, 8])
        assert np.all(np.abs(offset) <= 0.5 + 1e-9), (c, offset)


def test_normalise_per_modality():
    cfg = NormaliseConfig(hu_min=-1000, hu_max=400, suv_max=20, suv_scale=10, mr_region="roi", other="minmax")
    x = np.array([-2000, -1000, -300, 400, 3000], np.float32).reshape(1, 1, 5)
    np.testing.assert_allclose(F.normalise(x, "CT", cfg), [[[0, 0, 0.5, 1, 1]]], atol=1e-7)
    pet = np.array([0, 5, 20, 35], np.float32).reshape(1, 1, 4)
    np.testing.assert_allclose(F.normalise(pet, "pet", cfg), [[[0, 0.5, 2, 2]]])
    rng = np.random.default_rng(0)
    mr = rng.normal(300, 50, (6, 6, 6)).astype(np.float32)
    roi = np.zeros(mr.shape, bool)
    roi[1:4, 1:4, 1:4] = True
    z = F.normalise(mr, "MR", cfg, roi)
    assert abs(z[roi].mean()) < 1e-5 and abs(z[roi].std() - 1) < 1e-5
    mm = F.normalise(mr, "US", cfg)
    assert mm.min() == 0 and mm.max() == 1
    assert F.normalise(mr, "US", NormaliseConfig(other="none")).tolist() == mr.tolist()
    for out in (z, mm):
        assert out.dtype == np.float32 and np.all(np.isfinite(out))


def test_normalise_refuses_constant_intensities():
    flat = np.full((4, 4, 4), 7.0, np.float32)
    with pytest.raises(PreprocessError, match="constant in the volume region"):
        F.normalise(flat, "MR", NormaliseConfig(mr_region="volume"))
    with pytest.raises(PreprocessError, match="constant; cannot min-max"):
        F.normalise(flat, "XA", NormaliseConfig(other="minmax"))


def test_random_patch_centers_are_seeded_in_bounds_and_foreground_weighted():
    shape, size = (30, 40, 50), (16, 16, 16)
    fg = np.zeros(shape, bool)
    fg[20:24, 5:9, 40:44] = True
    a = F.random_patch_centers(shape, size, 400, fg, 0.5, np.random.default_rng(1))
    b = F.random_patch_centers(shape, size, 400, fg, 0.5, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == (400, 3)
    assert np.all(a >= 0) and np.all(a < np.asarray(shape))
    on_fg = fg[tuple(a.T)].mean()
    assert 0.4 < on_fg < 0.65  # half aimed at the 64 foreground voxels, a few uniform ones hit it too
    uniform = F.random_patch_centers(shape, size, 200, None, 0.5, np.random.default_rng(2))
    assert np.all(uniform >= np.asarray(size) // 2) and np.all(uniform <= np.asarray(shape) - np.asarray(size) // 2)


def test_bbox_crop_keeps_physical_geometry():
    vol = _volume((20, 18, 16), (0.5, 0.75, 2.0), origin=(10.0, -4.0, 7.0), fill=lambda s: np.random.default_rng(0).normal(size=s))
    m = np.zeros(vol.array.shape, np.uint8)
    m[5:8, 6:10, 4:9] = 1
    img, msk = F.bbox_crop(vol, vol.with_array(m), margin_vox=2)
    assert img.array.shape == (7, 8, 9) and msk.array.sum() == m.sum()
    # the crop's first voxel is the original voxel (z, y, x) = (3, 4, 2) at the same physical place
    np.testing.assert_allclose(img.origin_mm, vol.index_to_physical((2, 4, 3)))
    assert img.array[0, 0, 0] == vol.array[3, 4, 2]
    near = F.bbox_crop(vol, vol.with_array(np.pad(np.ones((1, 1, 1), np.uint8), ((0, 15), (0, 17), (0, 19)))), 3)[0]
    assert near.array.shape == (4, 4, 4) and near.origin_mm == vol.origin_mm  # clipped at the border


def test_exact_centre_crop_equals_voxel_crop_at_integral_centres_and_follows_sub_voxel_shifts():
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(20, 22, 24)).astype(np.float32)
    same = F.crop_at_exact_centre(arr, (10.0, 11.0, 12.0), (8, 8, 8), pad_value=-1.0)
    assert np.array_equal(same, F.crop_around_lesion(arr, (10, 11, 12), (8, 8, 8), pad_value=-1.0))
    # a half-voxel shift of the centre samples halfway between the voxel crops (linear interpolation)
    half = F.crop_at_exact_centre(arr, (10.0, 11.0, 12.5), (8, 8, 8), pad_value=-1.0)
    a = F.crop_around_lesion(arr, (10, 11, 12), (8, 8, 8))
    b = F.crop_around_lesion(arr, (10, 11, 13), (8, 8, 8))
    assert np.allclose(half, (a + b) / 2, atol=1e-6)
    # the rounded crop cannot see a 0.3-voxel move; the exact crop does
    assert np.array_equal(F.crop_around_lesion(arr, (10, 11, 12.3), (8, 8, 8)), a)
    assert not np.allclose(F.crop_at_exact_centre(arr, (10, 11, 12.3), (8, 8, 8)), a)
    # outside the volume: the pad value; masks stay 0/1 with order 0
    edge = F.crop_at_exact_centre(arr, (0.5, 0.0, 0.0), (8, 8, 8), pad_value=-7.0)
    assert (edge[0] == -7.0).all()
    m = (arr > 0).astype(np.uint8)
    mc = F.crop_at_exact_centre(m, (10.2, 11.7, 12.4), (8, 8, 8), 0, order=0)
    assert mc.dtype == np.uint8 and set(np.unique(mc)) <= {0, 1}
