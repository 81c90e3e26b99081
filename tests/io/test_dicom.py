"""DICOM series reading: voxel/geometry equality with the IBSI NIfTI, sorting, orientation, and every series check."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from tests.io.dicom_factory import copy_slices, sorted_ibsi_files, write_ct_series
from pydicom.uid import generate_uid

from radae.util.errors import IngestError
from radae.io import read_image
from radae.io.dicom import list_series, read_dicom_series

PAT1 = "ibsi/ibsi1_ct_phantom_PAT1"


@pytest.fixture(scope="module")
def ibsi(data_root):
    base = data_root / PAT1
    nifti = sitk.ReadImage(str(base / "nifti" / "phantom.nii.gz"))
    return base, nifti


def _volume(shape=(5, 6, 9), seed=0):
    return np.random.default_rng(seed).integers(-1000, 2000, size=shape).astype(np.int16)


# ----------------------------------------------------------------------------- IBSI CT phantom
def test_ibsi_series_equals_nifti_voxel_for_voxel(ibsi):
    base, nifti = ibsi
    vol = read_dicom_series(base / "dicom" / "image", case_id="pat1")
    ref = sitk.GetArrayFromImage(nifti)
    assert vol.array.shape == ref.shape == (60, 201, 204)
    assert np.array_equal(vol.array.astype(np.float32), ref)
    np.testing.assert_allclose(vol.spacing_mm, nifti.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(vol.origin_mm, nifti.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.direction, nifti.GetDirection(), atol=1e-6)
    assert vol.meta["modality"] == "CT" and vol.meta["n_slices"] == 60
    assert vol.meta["series_uid"] == "1.3.6.1.4.1.9590.100.1.2.296658988911737913102339329841519593982"


def test_meta_holds_no_patient_identifiers(ibsi):
    base, _ = ibsi
    vol = read_dicom_series(base / "dicom" / "image")
    assert set(vol.meta) == {"path", "source", "series_uid", "modality", "frame_of_reference_uid",
                             "n_slices", "units"}
    assert not any(str(v) in {"PAT1", "1"} for v in vol.meta.values())  # PatientName / PatientID of the phantom


def test_read_image_dispatches_folder_to_float32(ibsi):
    base, nifti = ibsi
    vol = read_image(base / "dicom" / "image", case_id="pat1")
    assert vol.array.dtype == np.float32
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(nifti))


def test_several_series_in_one_folder_lists_uids_and_picks_by_uid(ibsi, tmp_path):
    base, nifti = ibsi
    files = sorted_ibsi_files(base / "dicom" / "image")
    copy_slices(files[10:13], tmp_path)
    uid_b = generate_uid()
    copy_slices(files[20:24], tmp_path, series_uid=uid_b, new_sop_uids=True, description="second stack")
    uid_a = "1.3.6.1.4.1.9590.100.1.2.296658988911737913102339329841519593982"
    with pytest.raises(IngestError) as err:
        read_dicom_series(tmp_path, case_id="c7")
    msg = str(err.value)
    assert "case c7" in msg and str(tmp_path) in msg and "2 image series" in msg
    assert f"{uid_a} (CT, 3 slices)" in msg
    assert f"{uid_b} (CT, 4 slices)" in msg and "second stack" not in msg
    assert "set series_uid" in msg and "\n" not in msg
    vol = read_dicom_series(tmp_path, series_uid=uid_b)
    assert np.array_equal(vol.array.astype(np.float32), sitk.GetArrayFromImage(nifti)[20:24])
    np.testing.assert_allclose(vol.origin_mm, nifti.TransformIndexToPhysicalPoint((0, 0, 20)), atol=1e-4)
    with pytest.raises(IngestError, match=r"series_uid 1\.2\.3 not in this folder; series present: ") as err:
        read_dicom_series(tmp_path, series_uid="1.2.3")
    assert uid_a in str(err.value) and uid_b in str(err.value)


def test_missing_slice_is_an_error(ibsi, tmp_path):
    base, _ = ibsi
    files = sorted_ibsi_files(base / "dicom" / "image")
    copy_slices(files[:30] + files[31:], tmp_path)
    with pytest.raises(IngestError) as err:
        read_dicom_series(tmp_path, case_id="c1")
    msg = str(err.value)
    assert "case c1" in msg and "1 slice(s) missing" in msg and "regular spacing 3.000 mm" in msg
    assert "-13.40..-7.40 mm" in msg  # slice 30 at -10.40 mm is gone and "re-export the complete series" in msg


# ----------------------------------------------------------------------------- synthetic series
@pytest.mark.parametrize("row_cos,col_cos", [((1, 0, 0), (0, 1, 0)), ((0, 1, 0), (0, 0, -1)), ((1, 0, 0), (0, -1, 0))])
def test_synthetic_series_sorted_and_geometry_exact(tmp_path, row_cos, col_cos):
    arr = _volume()
    slices = write_ct_series(tmp_path, arr, pixel_spacing=(0.8, 0.6), row_cosine=row_cos, col_cosine=col_cos, shuffle_seed=3)
    vol = read_dicom_series(tmp_path)
    assert np.array_equal(vol.array, arr)
    assert vol.spacing_mm == pytest.approx((0.6, 0.8, 2.5))  # x = between columns = PixelSpacing[1]
    normal = np.cross(row_cos, col_cos)
    np.testing.assert_allclose(np.reshape(vol.direction, (3, 3)), np.column_stack([row_cos, col_cos, normal]), atol=1e-6)
    for k, ds in enumerate(slices):  # voxel (col 4, row 2, slice k) lands where DICOM puts it
        expect = np.asarray(ds.ImagePositionPatient) + 4 * 0.6 * np.asarray(row_cos) + 2 * 0.8 * np.asarray(col_cos)
        np.testing.assert_allclose(vol.index_to_physical((4, 2, k)), expect, atol=1e-6)


def test_non_uniform_spacing_is_an_error(tmp_path):
    write_ct_series(tmp_path, _volume(), slice_gaps_mm=[2.5, 2.5, 3.1, 2.5])
    with pytest.raises(IngestError, match=r"case c2: .*non-uniform slice spacing \(gaps 2\.500\.\.3\.100 mm, median 2\.500 mm\)"):
        read_dicom_series(tmp_path, case_id="c2")


def test_two_missing_slices_counted(tmp_path):
    write_ct_series(tmp_path, _volume((6, 4, 4)), slice_gaps_mm=[2.0, 2.0, 6.0, 2.0, 2.0])
    with pytest.raises(IngestError, match=r"2 slice\(s\) missing"):
        read_dicom_series(tmp_path)


def test_sheared_stack_gantry_tilt_is_an_error(tmp_path):
    write_ct_series(tmp_path, _volume(), tilt_shift_mm=(0.0, 2.5 * np.tan(np.radians(15)), 0.0))
    with pytest.raises(IngestError, match=r"sheared against their normal by 15\.00 deg \(gantry tilt\) -> de-tilt"):
        read_dicom_series(tmp_path)


def test_gantry_tilt_tag_is_an_error(tmp_path):
    import pydicom

    write_ct_series(tmp_path, _volume())
    for f in tmp_path.glob("*.dcm"):
        ds = pydicom.dcmread(str(f))
        ds.GantryDetectorTilt = 12.0
        ds.save_as(f)
    with pytest.raises(IngestError, match=r"gantry tilt \[12\.0\] deg"):
        read_dicom_series(tmp_path)


def test_duplicate_positions_are_an_error(tmp_path):
    write_ct_series(tmp_path, _volume(), slice_gaps_mm=[2.5, 0.0, 2.5, 2.5])
    with pytest.raises(IngestError, match=r"1 slice\(s\) share a position .* split the series"):
        read_dicom_series(tmp_path)


def test_single_slice_and_empty_folders(tmp_path):
    write_ct_series(tmp_path / "one", _volume((1, 4, 4)))
    with pytest.raises(IngestError, match=r"has 1 slice; radae needs a 3D volume"):
        read_dicom_series(tmp_path / "one")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(IngestError, match=r"no DICOM image series found: no DICOM files"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(IngestError, match=r"no DICOM files directly in this folder \(sub-folders: empty, one\)"):
        read_dicom_series(tmp_path)
    with pytest.raises(IngestError, match=r"DICOM folder not found"):
        read_dicom_series(tmp_path / "nope")


def test_list_series_ignores_non_image_objects(tmp_path):
    from tests.io.dicom_factory import write_rtstruct

    slices = write_ct_series(tmp_path, _volume())
    write_rtstruct(tmp_path / "rs.dcm", slices, {"a": [(1, [(1, 1), (3, 1), (3, 3)])]})
    series = list_series(tmp_path)
    assert [len(s.slices) for s in series] == [5]
    assert read_dicom_series(tmp_path).array.shape == (5, 6, 9)
