"""read_plain_nifti: the one-pass NIfTI read gives SimpleITK.ReadImage's voxels and geometry, or None.

Every file is tiny, written in tmp_path by SimpleITK (or by hand where ITK cannot write it: big endian, NIfTI-2,
a patched header), and the reference is always ``sitk.ReadImage`` of the same file. Files the fast path refuses must
still read (or fail) through ``radae.io.read_image`` exactly as ITK and radae's full checks decide.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radae.io import read_image, read_mask
from radae.io.fastnifti import PLAIN_TYPES, read_plain_nifti
from radae.util.errors import IngestError

SHAPE_ZYX = (5, 6, 7)  # non-cubic, so a swapped axis cannot pass
SPACING = (0.7, 1.25, 2.5)
ORIGIN = (-12.5, 30.25, 7.0)
DTYPES = [t for t, _ in PLAIN_TYPES.values()]
EXTS = [".nii", ".nii.gz"]


def _rotation(axis, degrees) -> tuple[float, ...]:
    """Row-major 3x3 rotation about ``axis`` (Rodrigues' formula)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.radians(degrees)
    return tuple((np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx).ravel().tolist())


DIRECTIONS = {
    "identity": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    "rot90": (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    "flip_y": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),  # determinant -1 (qfac -1 in the header)
    "oblique": _rotation((1.0, 2.0, 3.0), 27.0),
}


def _values(dtype: str, rng: np.random.Generator, shape=SHAPE_ZYX) -> np.ndarray:
    """Random voxels of ``dtype`` with the type's extremes (and -0.0, a subnormal for floats) placed in."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        arr = rng.normal(0.0, 1000.0, shape).astype(dt)
        arr.flat[:4] = [-0.0, np.finfo(dt).max, np.finfo(dt).min, np.finfo(dt).tiny / 4]
    else:
        info = np.iinfo(dt)
        arr = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
        arr.flat[:2] = [info.min, info.max]
    return arr


def _write(arr, path: Path, spacing=SPACING, origin=ORIGIN, direction=DIRECTIONS["identity"], is_vector=False) -> Path:
    img = sitk.GetImageFromArray(arr, isVector=is_vector)
    img.SetSpacing(spacing[:img.GetDimension()])
    img.SetOrigin(origin[:img.GetDimension()])
    if img.GetDimension() == 3:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


def _assert_same_as_itk(path: Path) -> None:
    ref = sitk.ReadImage(str(path))
    want = sitk.GetArrayFromImage(ref)
    vol = read_plain_nifti(path)
    assert vol is not None, f"{path.name}: a plain file was refused"
    assert vol.array.dtype == want.dtype and vol.array.shape == want.shape
    assert vol.array.tobytes() == want.tobytes()  # bit for bit: -0.0 and NaN payloads included
    assert vol.array.flags.writeable
    assert vol.spacing_mm == ref.GetSpacing()
    assert vol.origin_mm == ref.GetOrigin()
    assert vol.direction == ref.GetDirection()


def _patched(path: Path, out: Path, fields: list[tuple[int, str, tuple]]) -> Path:
    """A copy of ``path`` with ``(offset, struct format, values)`` packed into its header ((de)compressed as needed)."""
    raw = path.read_bytes()
    gz = raw[:2] == b"\x1f\x8b"
    data = bytearray(gzip.decompress(raw) if gz else raw)
    for offset, fmt, values in fields:
        struct.pack_into(fmt, data, offset, *values)
    out.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return out


def _header(path: Path) -> bytes:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)[:348]


def _nifti1_by_hand(arr: np.ndarray, endian: str, vox_offset: int = 352) -> bytes:
    """A minimal NIfTI-1 single file (no qform/sform: ITK's pixdim-only geometry) in either byte order."""
    code = {t: c for c, (t, _) in PLAIN_TYPES.items()}[arr.dtype.str[1:]]
    z, y, x = arr.shape
    hdr = bytearray(348)
    struct.pack_into(endian + "i", hdr, 0, 348)
    struct.pack_into(endian + "8h", hdr, 40, 3, x, y, z, 1, 1, 1, 1)
    struct.pack_into(endian + "2h", hdr, 70, code, arr.dtype.itemsize * 8)
    struct.pack_into(endian + "8f", hdr, 76, 1.0, *SPACING, 0.0, 0.0, 0.0, 0.0)
    struct.pack_into(endian + "3f", hdr, 108, float(vox_offset), 1.0, 0.0)
    hdr[123] = 2  # xyzt_units: mm
    hdr[344:348] = b"n+1\0"
    return bytes(hdr) + bytes(vox_offset - 348) + arr.astype(arr.dtype.newbyteorder(endian)).tobytes()


def _nifti2_by_hand(arr: np.ndarray) -> bytes:
    """A minimal little-endian NIfTI-2 single file with an sform (code 1)."""
    code = {t: c for c, (t, _) in PLAIN_TYPES.items()}[arr.dtype.str[1:]]
    z, y, x = arr.shape
    hdr = bytearray(540)
    struct.pack_into("<i", hdr, 0, 540)
    hdr[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into("<2h", hdr, 12, code, arr.dtype.itemsize * 8)
    struct.pack_into("<8q", hdr, 16, 3, x, y, z, 1, 1, 1, 1)
    struct.pack_into("<8d", hdr, 104, 1.0, *SPACING, 0.0, 0.0, 0.0, 0.0)
    struct.pack_into("<q2d", hdr, 168, 544, 1.0, 0.0)
    struct.pack_into("<i", hdr, 348, 1)
    struct.pack_into("<12d", hdr, 400, SPACING[0], 0, 0, 1.0, 0, SPACING[1], 0, 2.0, 0, 0, SPACING[2], 3.0)
    struct.pack_into("<i", hdr, 500, 2)
    return bytes(hdr) + bytes(4) + arr.tobytes()


# ----------------------------------------------------------------------------- plain files: equal to ITK


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_file_reads_as_itk_reads_it(tmp_path, dtype, direction, ext):
    rng = np.random.default_rng(zlib.crc32(f"{dtype}-{direction}-{ext}".encode()))
    path = _write(_values(dtype, rng), tmp_path / f"img{ext}", direction=DIRECTIONS[direction])
    _assert_same_as_itk(path)
    if dtype == "f4" and direction == "identity":
        vol = read_plain_nifti(path)
        assert vol.spacing_mm == pytest.approx(SPACING) and vol.origin_mm == pytest.approx(ORIGIN)


@pytest.mark.parametrize("ext", EXTS)
def test_read_image_and_read_mask_of_plain_files_equal_itk(tmp_path, ext):
    rng = np.random.default_rng(3)
    img = _write(_values("i2", rng), tmp_path / f"img{ext}", direction=DIRECTIONS["oblique"])
    lab = np.zeros(SHAPE_ZYX, np.uint8)
    lab[1:4, 2:5, 3:6] = 2
    msk = _write(lab, tmp_path / f"mask{ext}", direction=DIRECTIONS["oblique"])
    ref = sitk.ReadImage(str(img))
    vol = read_image(img)
    assert vol.array.dtype == np.float32
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(ref).astype(np.float32))
    assert (vol.spacing_mm, vol.origin_mm, vol.direction) == (ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    mask = read_mask(msk, 2, vol)
    assert mask.array.dtype == np.uint8 and np.array_equal(mask.array, (lab == 2).astype(np.uint8))


@pytest.mark.parametrize("ext", EXTS)
def test_single_slice_and_extended_header_read_as_itk(tmp_path, ext):
    rng = np.random.default_rng(4)
    _assert_same_as_itk(_write(_values("i2", rng, (1, 6, 7)), tmp_path / f"slice{ext}"))
    padded = tmp_path / f"padded{ext}"  # voxels start at 400, not 352
    data = _nifti1_by_hand(_values("f4", rng), "<", vox_offset=400)
    padded.write_bytes(gzip.compress(data) if ext == ".nii.gz" else data)
    _assert_same_as_itk(padded)
    gz = tmp_path / "members.nii.gz"  # two gzip members: a valid stream that gzip and zlib both read whole
    gz.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    _assert_same_as_itk(gz)


@pytest.mark.parametrize("ext", EXTS)
def test_qform_and_sform_that_differ_give_itk_geometry(tmp_path, ext):
    base = _write(_values("f4", np.random.default_rng(5)), tmp_path / f"base{ext}", direction=DIRECTIONS["rot90"])
    hdr = _header(base)
    assert struct.unpack("<2h", hdr[252:256]) != (0, 0)
    sx, sy, sz = SPACING
    srow = (0.0, sy, 0.0, 40.0, 0.0, 0.0, sz, -3.5, sx, 0.0, 0.0, 11.0)  # another orthonormal frame, another origin
    quat = (0.2, -0.4, 0.3)  # another rotation (a = sqrt(1 - 0.29))
    variants = {
        "sform_differs": [(254, "<h", (2,)), (280, "<12f", srow)],
        "qform_differs": [(252, "<h", (1,)), (256, "<3f", quat), (268, "<3f", (1.0, 2.0, 3.0))],
        "sform_only": [(252, "<h", (0,)), (254, "<h", (1,)), (280, "<12f", srow)],
        "qform_only": [(254, "<h", (0,)), (280, "<12f", srow), (256, "<3f", quat)],
        "neither": [(252, "<h", (0,)), (254, "<h", (0,))],
    }
    geometries = set()
    for name, fields in variants.items():
        path = _patched(base, tmp_path / f"{name}{ext}", fields)
        _assert_same_as_itk(path)
        ref = sitk.ReadImage(str(path))
        geometries.add((ref.GetOrigin(), ref.GetDirection()))
    assert len(geometries) >= 3  # the patches did reach ITK's geometry: the check above compared distinct frames


# ----------------------------------------------------------------------------- not plain: None, and the full read


def _assert_refused_then_same_as_itk(path: Path, expect_zyx=None) -> np.ndarray:
    """None from the fast path; read_image gives ITK's voxels (as float32) and geometry. Returns ITK's array."""
    assert read_plain_nifti(path) is None
    ref = sitk.ReadImage(str(path))
    if ref.GetDimension() == 4:
        ref = ref[:, :, :, 0]
    want = sitk.GetArrayFromImage(ref)
    vol = read_image(path)
    assert np.array_equal(vol.array, want.astype(np.float32))
    assert (vol.spacing_mm, vol.origin_mm, vol.direction) == (ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    if expect_zyx is not None:
        assert np.array_equal(vol.array, np.asarray(expect_zyx, np.float32))
    return want


@pytest.mark.parametrize("ext", EXTS)
def test_4d_with_one_volume_falls_back_to_itk(tmp_path, ext):
    arr = _values("i2", np.random.default_rng(6))
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    path = tmp_path / f"four{ext}"
    sitk.WriteImage(sitk.JoinSeries([img]), str(path))
    assert struct.unpack("<8h", _header(path)[40:56])[:5] == (4, 7, 6, 5, 1)
    _assert_refused_then_same_as_itk(path, expect_zyx=arr)


@pytest.mark.parametrize("ext", EXTS)
def test_2d_and_multicomponent_files_are_refused_with_radae_errors(tmp_path, ext):
    rng = np.random.default_rng(7)
    flat = _write(_values("i2", rng, (6, 7)), tmp_path / f"flat{ext}")
    assert read_plain_nifti(flat) is None
    with pytest.raises(IngestError, match=r"image is 2D") as err:
        read_image(flat, case_id="c1")
    assert "radae needs 3D volumes" in str(err.value)
    for name, arr in (("vector", rng.normal(size=SHAPE_ZYX + (3,)).astype(np.float32)),
                      ("rgb", rng.integers(0, 255, SHAPE_ZYX + (3,), dtype=np.uint8, endpoint=True))):
        path = _write(arr, tmp_path / f"{name}{ext}", is_vector=True)
        assert sitk.ReadImage(str(path)).GetNumberOfComponentsPerPixel() == 3
        assert read_plain_nifti(path) is None
        with pytest.raises(IngestError, match=r"image has 3 components per voxel"):
            read_image(path, case_id="c1")


@pytest.mark.parametrize("ext", EXTS)
def test_intensity_scaling_falls_back_to_itk_scaled_values(tmp_path, ext):
    arr = _values("i2", np.random.default_rng(8)) // 4
    base = _write(arr, tmp_path / f"base{ext}")
    assert struct.unpack("<2f", _header(base)[112:120]) in ((0.0, 0.0), (1.0, 0.0))
    slope2 = _patched(base, tmp_path / f"slope2{ext}", [(112, "<2f", (2.0, 0.0))])
    _assert_refused_then_same_as_itk(slope2, expect_zyx=arr.astype(np.float64) * 2)
    shifted = _patched(base, tmp_path / f"inter{ext}", [(112, "<2f", (1.0, -1024.0))])
    _assert_refused_then_same_as_itk(shifted, expect_zyx=arr.astype(np.float64) - 1024)
    for slope in (0.0, 1.0):  # "no scaling" in the NIfTI standard: plain, and ITK agrees
        _assert_same_as_itk(_patched(base, tmp_path / f"s{slope:g}{ext}", [(112, "<2f", (slope, 0.0))]))


@pytest.mark.parametrize("dtype", ["i2", "f8"])
def test_big_endian_and_nifti2_fall_back_to_itk(tmp_path, dtype):
    arr = _values(dtype, np.random.default_rng(9))
    if arr.dtype.kind == "f":
        arr = arr.clip(-1e30, 1e30)  # read_image's float32 cast stays finite
    little = tmp_path / "little.nii"
    little.write_bytes(_nifti1_by_hand(arr, "<"))
    _assert_same_as_itk(little)  # the hand-made header is a valid plain file
    big = tmp_path / "big.nii.gz"
    big.write_bytes(gzip.compress(_nifti1_by_hand(arr, ">")))
    want = _assert_refused_then_same_as_itk(big)
    assert want.tobytes() == sitk.GetArrayFromImage(sitk.ReadImage(str(little))).tobytes()
    two = tmp_path / "two.nii"
    two.write_bytes(_nifti2_by_hand(arr))
    assert read_plain_nifti(two) is None
    try:
        sitk.ReadImage(str(two))
    except RuntimeError:  # this ITK build's reader rejects the file: radae must say so, as before the fast path
        with pytest.raises(IngestError, match=r"cannot read image"):
            read_image(two, case_id="c1")
    else:
        _assert_refused_then_same_as_itk(two)


# ----------------------------------------------------------------------------- damaged files: None, and the error


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_voxels_are_refused_and_reported(tmp_path, ext, bad):
    arr = _values("f4", np.random.default_rng(10))
    arr[2, 3, 4] = bad
    path = _write(arr, tmp_path / f"nan{ext}")
    assert read_plain_nifti(path) is None
    with pytest.raises(IngestError, match=r"image has 1 NaN/inf voxels") as err:
        read_image(path, case_id="c1")
    assert "fix or mask them" in str(err.value)
    ref = read_image(_write(np.zeros(SHAPE_ZYX, np.float32), tmp_path / f"ok{ext}"))
    with pytest.raises(IngestError, match=r"mask has 1 NaN/inf voxels"):
        read_mask(path, None, ref, case_id="c1")


@pytest.mark.parametrize("ext", EXTS)
def test_truncated_file_is_refused_and_reported_as_cut_off(tmp_path, ext):
    path = _write(_values("f4", np.random.default_rng(11), (12, 14, 16)), tmp_path / f"full{ext}")
    raw = path.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(raw[:len(raw) // 2])
    assert read_plain_nifti(cut) is None
    with pytest.raises(IngestError, match=r"cut off|truncated") as err:
        read_image(cut, case_id="c1")
    assert f"file {cut}" in str(err.value) and "copy or export it again" in str(err.value)


def test_flipped_byte_in_compressed_payload_is_refused_and_reported(tmp_path):
    path = _write(_values("i2", np.random.default_rng(12), (12, 14, 16)), tmp_path / "img.nii.gz")
    good = path.read_bytes()
    tried = 0
    for pos in (len(good) // 2, len(good) // 3, 2 * len(good) // 3):
        data = bytearray(good)
        data[pos] ^= 0x01
        try:
            gzip.decompress(bytes(data))
            continue  # gzip cannot see this flip: nothing to detect
        except Exception:  # noqa: BLE001 - any gzip/zlib error means a damaged stream
            pass
        tried += 1
        bad = tmp_path / f"flip{pos}.nii.gz"
        bad.write_bytes(bytes(data))
        assert read_plain_nifti(bad) is None
        with pytest.raises(IngestError, match=r"corrupt|cut off|truncated|cannot read"):
            read_image(bad, case_id="c1")
    assert tried >= 2


@pytest.mark.parametrize("ext", EXTS)
def test_float64_beyond_float32_range_is_refused_not_turned_into_inf(tmp_path, ext):
    arr = np.zeros((4, 5, 6), np.float64)
    arr[1, 2, 3] = 1e300
    path = tmp_path / f"huge{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(IngestError, match=r"beyond float32's range") as err:
        read_image(path, case_id="C7")
    assert "C7" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("ext", EXTS)
def test_a_file_with_the_same_geometry_bytes_reuses_itks_geometry(tmp_path, ext, monkeypatch):
    from radae.io import fastnifti

    image = sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    image.SetSpacing((0.7, 1.1, 2.9))
    image.SetOrigin((-12.5, 3.25, 40.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    first, second, moved = tmp_path / f"image{ext}", tmp_path / f"mask{ext}", tmp_path / f"moved{ext}"
    sitk.WriteImage(image, str(first))
    mask = sitk.Cast(image > 30, sitk.sitkUInt8)
    sitk.WriteImage(mask, str(second))
    image.SetOrigin((-12.5, 3.25, 41.0))
    sitk.WriteImage(image, str(moved))
    _assert_same_as_itk(first)

    def no_itk(*args, **kwargs):
        raise AssertionError("ITK's header read should not be needed")

    monkeypatch.setattr(fastnifti, "_itk_header", no_itk)
    _assert_same_as_itk(second)  # same geometry bytes, another pixel type: ITK's geometry reused
    with pytest.raises(AssertionError, match="should not be needed"):
        read_plain_nifti(moved)  # another origin: ITK reads it
