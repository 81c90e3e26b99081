"""DICOM SEG -> mask (highdicom): SEGs written here from real and synthetic series come back voxel for voxel."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from tests.io.dicom_factory import sorted_ibsi_files, write_ct_series, write_seg

from radae.util.errors import IngestError
from radae.io import read_image, read_mask
from radae.io.seg import seg_to_mask

PAT1 = "ibsi/ibsi1_ct_phantom_PAT1"


@pytest.fixture()
def synthetic(tmp_path):
    """Non-square series (7 slices, 10 x 14) and two segments; SEG frames given in shuffled slice order."""
    slices = write_ct_series(tmp_path / "img", np.zeros((7, 10, 14), np.int16), pixel_spacing=(0.9, 0.7))
    lesion = np.zeros((7, 10, 14), np.uint8)
    lesion[2:5, 3:7, 8:13] = 1
    cyst = np.zeros_like(lesion)
    cyst[5, 1:3, 1:4] = 1
    order = np.random.default_rng(1).permutation(7)
    write_seg(tmp_path / "seg.dcm", [slices[k] for k in order], {"Lesion": lesion[order], "Cyst": cyst[order]})
    image = read_image(tmp_path / "img")
    return tmp_path, image, lesion, cyst


def test_segments_by_number_and_label_exact(synthetic):
    tmp_path, image, lesion, cyst = synthetic
    assert np.array_equal(seg_to_mask(tmp_path / "seg.dcm", 1, image).array, lesion)
    assert np.array_equal(seg_to_mask(tmp_path / "seg.dcm", "2", image).array, cyst)
    assert np.array_equal(seg_to_mask(tmp_path / "seg.dcm", "cyst", image).array, cyst)
    m = read_mask(tmp_path / "seg.dcm", "Lesion", image, case_id="c1")  # dispatch by Modality SEG
    assert m.array.dtype == np.uint8 and np.array_equal(m.array, lesion)
    assert m.spacing_mm == image.spacing_mm and m.origin_mm == image.origin_mm


def test_unknown_segment_lists_segments(synthetic):
    tmp_path, image, _, _ = synthetic
    with pytest.raises(IngestError) as err:
        seg_to_mask(tmp_path / "seg.dcm", "Liver", image, case_id="c9")
    assert str(err.value) == (f"case c9: file {tmp_path / 'seg.dcm'}: segment 'Liver' not in SEG "
                              "(segments 1: 'Lesion', 2: 'Cyst') -> fix mask_label in the manifest")
    with pytest.raises(IngestError, match=r"mask_label must pick a segment of this SEG \(segments 1: 'Lesion', 2: 'Cyst'\)"):
        seg_to_mask(tmp_path / "seg.dcm", None, image)


def test_other_frame_of_reference_is_an_error(synthetic):
    tmp_path, image, _, _ = synthetic
    other = type(image)(image.array, image.spacing_mm, image.origin_mm, image.direction,
                        {**image.meta, "frame_of_reference_uid": "1.2.3.4"})
    with pytest.raises(IngestError, match=r"SEG frame of reference .* differs from the image's 1\.2\.3\.4"):
        seg_to_mask(tmp_path / "seg.dcm", 1, other)


def test_segment_outside_the_image_is_an_error(synthetic):
    tmp_path, image, _, _ = synthetic
    far = type(image)(image.array, image.spacing_mm, (500.0, 500.0, 500.0), image.direction, {})
    with pytest.raises(IngestError, match=r"segment 1 lies outside the image grid"):
        seg_to_mask(tmp_path / "seg.dcm", 1, far)


def test_fractional_seg_thresholded_at_half(tmp_path):
    slices = write_ct_series(tmp_path / "img", np.zeros((4, 6, 6), np.int16))
    prob = np.zeros((4, 6, 6), np.float32)
    prob[1, 2:4, 2:4] = 0.8
    prob[2, 2:4, 2:4] = 0.3
    write_seg(tmp_path / "seg.dcm", slices, {"Lesion": prob}, fractional=True)
    image = read_image(tmp_path / "img")
    assert np.array_equal(seg_to_mask(tmp_path / "seg.dcm", 1, image).array, (prob >= 0.5).astype(np.uint8))


def test_not_a_seg(tmp_path):
    write_ct_series(tmp_path / "img", np.zeros((3, 4, 4), np.int16))
    image = read_image(tmp_path / "img")
    with pytest.raises(IngestError, match=r"not a DICOM SEG \(Modality 'CT'\)"):
        seg_to_mask(sorted((tmp_path / "img").glob("*.dcm"))[0], 1, image)


@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent")
def test_ibsi_seg_equals_nifti_mask(data_root, tmp_path):
    base = data_root / PAT1
    source = [pydicom.dcmread(str(f)) for f in sorted_ibsi_files(base / "dicom" / "image")]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "nifti" / "mask.nii.gz"))).astype(np.uint8)
    write_seg(tmp_path / "gtv_seg.dcm", source, {"GTV-1": ref})
    image = read_image(base / "dicom" / "image", case_id="pat1")
    mask = read_mask(tmp_path / "gtv_seg.dcm", "GTV-1", image, case_id="pat1")
    assert np.array_equal(mask.array, ref) and int(mask.array.sum()) == 125256
