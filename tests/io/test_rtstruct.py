"""RTSTRUCT -> mask: Dice against the IBSI NIfTI mask, exact placement on non-square/anisotropic grids, errors."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from tests.io.dicom_factory import copy_slices, sorted_ibsi_files, write_ct_series, write_rtstruct
from pydicom.uid import generate_uid

from radae.util.errors import IngestError
from radae.io import read_image, read_mask
from radae.io.rtstruct import rtstruct_to_mask

PAT1 = "ibsi/ibsi1_ct_phantom_PAT1"
RS = "dicom/mask/DCM_RS_00060.dcm"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def pat1(data_root):
    base = data_root / PAT1
    image = read_image(base / "dicom" / "image", case_id="pat1")
    return base, image


def test_ibsi_rtstruct_matches_nifti_mask(pat1):
    base, image = pat1
    mask = rtstruct_to_mask(base / RS, "GTV-1", base / "dicom" / "image", image, case_id="pat1")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "nifti" / "mask.nii.gz")))
    assert mask.array.dtype == np.uint8 and mask.array.shape == ref.shape == (60, 201, 204)
    assert set(np.unique(mask.array)) == {0, 1}
    d = dice(mask.array, ref)
    assert d >= 0.99, d
    # measured: pixel centres by the even-odd rule give the IBSI mask voxel for voxel (rt-utils' fillPoly gave 0.9864)
    assert np.array_equal(mask.array, (ref > 0).astype(np.uint8)) and int(mask.array.sum()) == 125256
    assert mask.spacing_mm == image.spacing_mm and mask.origin_mm == image.origin_mm
    # same z extent: a slice-order mix-up would shift it
    z_mask, z_ref = np.flatnonzero(mask.array.any((1, 2))), np.flatnonzero(ref.any((1, 2)))
    assert (z_mask.min(), z_mask.max()) == (z_ref.min(), z_ref.max())


def test_read_mask_dispatches_rtstruct(pat1):
    base, image = pat1
    mask = read_mask(base / RS, "gtv-1", image, image_path=base / "dicom" / "image", case_id="pat1")  # case-insensitive
    assert int(mask.array.sum()) == 125256  # the IBSI NIfTI mask's voxel count


def test_unknown_roi_lists_names(pat1):
    base, image = pat1
    with pytest.raises(IngestError) as err:
        rtstruct_to_mask(base / RS, "Lung", base / "dicom" / "image", image, case_id="pat1")
    assert str(err.value) == (f"case pat1: file {base / RS}: ROI 'Lung' not in RTSTRUCT (ROIs: 'GTV-1') "
                              "-> fix mask_label in the manifest")


def test_rtstruct_of_another_series_is_an_error(pat1, tmp_path):
    base, _ = pat1
    other = generate_uid()
    copy_slices(sorted_ibsi_files(base / "dicom" / "image"), tmp_path, series_uid=other, new_sop_uids=True)
    image = read_image(tmp_path, case_id="c3")
    with pytest.raises(IngestError, match=r"case c3: .*RTSTRUCT refers to series 1\.3\.6\.1\.4\.1\.9590\.100\.1\.2\.2966.* but "
                                          rf"the image is series {other} -> give the image series the structures were drawn on"):
        rtstruct_to_mask(base / RS, "GTV-1", tmp_path, image, case_id="c3")


# ----------------------------------------------------------------------------- synthetic, exact
@pytest.mark.parametrize("pixel_spacing", [(0.8, 0.6), (0.6, 0.8)])
@pytest.mark.parametrize("row_cos,col_cos", [((1, 0, 0), (0, 1, 0)), ((0, 1, 0), (0, 0, -1))])
@pytest.mark.parametrize("with_refs", [True, False])
def test_contour_lands_on_exact_voxels(tmp_path, pixel_spacing, row_cos, col_cos, with_refs):
    """Non-square (12 x 20), anisotropic pixels, shuffled files: a rectangle and a triangle drawn through pixel
    centres cover exactly the pixel centres inside them (half-open: a centre on an edge at the lower x / y index is
    in, at the higher index out, so the rectangle holds its area in pixels), on the right slice."""
    arr = np.zeros((6, 12, 20), np.int16)
    slices = write_ct_series(tmp_path / "img", arr, pixel_spacing=pixel_spacing, row_cosine=row_cos, col_cosine=col_cos)
    rect = [(14, 2), (18, 2), (18, 5), (14, 5)]  # (col, row), near the right edge: clipped if columns were cut at 12
    tri = [(1, 1), (5, 1), (1, 5)]
    write_rtstruct(tmp_path / "rs.dcm", slices, {"Lesion": [(3, rect), (4, tri)], "Other": [(0, tri)]}, with_image_refs=with_refs)
    image = read_image(tmp_path / "img")
    mask = rtstruct_to_mask(tmp_path / "rs.dcm", "Lesion", tmp_path / "img", image)
    expect = np.zeros(arr.shape, np.uint8)
    expect[3, 2:5, 14:18] = 1  # 4 x 3 = the rectangle's area
    for r in range(1, 5):
        expect[4, r, 1:6 - r] = 1  # right triangle, legs along row 1 and column 1 (in), hypotenuse x + y = 6 (out)
    assert np.array_equal(mask.array, expect)


def test_roi_name_required_when_several(tmp_path):
    slices = write_ct_series(tmp_path / "img", np.zeros((4, 8, 8), np.int16))
    write_rtstruct(tmp_path / "rs.dcm", slices, {"A": [(1, [(1, 1), (4, 1), (4, 4)])], "B": [(2, [(1, 1), (4, 1), (4, 4)])]})
    image = read_image(tmp_path / "img")
    with pytest.raises(IngestError, match=r"mask_label must name an ROI of this RTSTRUCT \(ROIs: 'A', 'B'\)"):
        rtstruct_to_mask(tmp_path / "rs.dcm", None, tmp_path / "img", image)
    assert rtstruct_to_mask(tmp_path / "rs.dcm", "B", tmp_path / "img", image).array[2].sum() > 0


def test_contour_off_the_slices_is_an_error(tmp_path):
    slices = write_ct_series(tmp_path / "img", np.zeros((4, 8, 8), np.int16))
    ds = write_rtstruct(tmp_path / "rs.dcm", slices, {"A": [(1, [(1, 1), (4, 1), (4, 4)])]}, with_image_refs=False)
    pts = np.asarray(ds.ROIContourSequence[0].ContourSequence[0].ContourData, float).reshape(-1, 3)
    pts[:, 2] += 40.0  # far above the stack (axial: normal = +z)
    ds.ROIContourSequence[0].ContourSequence[0].ContourData = [float(v) for v in pts.ravel()]
    ds.save_as(tmp_path / "rs.dcm", enforce_file_format=True)
    image = read_image(tmp_path / "img")
    with pytest.raises(IngestError, match=r"ROI 'A': a contour at 72\.50 mm lies on no slice of the image series \(30\.00\.\.37\.50 mm\)"):
        rtstruct_to_mask(tmp_path / "rs.dcm", "A", tmp_path / "img", image)


def test_reference_grid_must_be_the_series(tmp_path):
    slices = write_ct_series(tmp_path / "img", np.zeros((4, 8, 8), np.int16))
    write_rtstruct(tmp_path / "rs.dcm", slices, {"A": [(1, [(1, 1), (4, 1), (4, 4)])]})
    image = read_image(tmp_path / "img")
    shifted = type(image)(image.array, image.spacing_mm, (0.0, 0.0, 0.0), image.direction, image.meta)
    with pytest.raises(IngestError, match=r"is not at z index 0 of the image grid"):
        rtstruct_to_mask(tmp_path / "rs.dcm", "A", tmp_path / "img", shifted)


def test_not_an_rtstruct(tmp_path):
    slices = write_ct_series(tmp_path / "img", np.zeros((3, 4, 4), np.int16))
    image = read_image(tmp_path / "img")
    one = sorted((tmp_path / "img").glob("*.dcm"))[0]
    with pytest.raises(IngestError, match=r"not an RTSTRUCT \(Modality 'CT'\)"):
        rtstruct_to_mask(one, "A", tmp_path / "img", image)
    assert len(slices) == 3
