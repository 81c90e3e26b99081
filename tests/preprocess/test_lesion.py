"""One lesion through the shared path (read -> resample -> normalise -> crop -> cache files), on real NIfTI files."""
import logging

import numpy as np
import pytest
import SimpleITK as sitk

from radae.config import PreprocessConfig
from radae.util.hashing import file_sha256
from radae.preprocess.lesion import preprocess_lesion
from radae.preprocess.store import load_patches, load_roi
from radae.runfolder import ROI_INDEX_COLUMNS

from .conftest import write_case

CFG = PreprocessConfig(spacing_mm=(1.5, 1.5, 1.5), roi_size_vox=(12, 10, 8), patches={"per_volume": 3})


def _row(case: dict, **extra) -> dict:
    row = {"series_uid": None, "seed_x": None, "seed_y": None, "seed_z": None, **case, **extra}
    row["image_sha256"] = file_sha256(row["image"])
    row["mask_sha256"] = file_sha256(row["mask"]) if row.get("mask") else ""
    return row


def _centroid_zyx(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask > 0).mean(axis=0)


@pytest.mark.parametrize("spacing, origin", [((1.0, 1.0, 1.0), (0, 0, 0)), ((0.7, 0.9, 2.2), (-120.5, 33.0, 7.25))])
def test_roi_has_target_grid_and_is_centred_on_the_lesion(tmp_path, spacing, origin):
    case = write_case(tmp_path, "A_1", np.random.default_rng(0), spacing=spacing, origin=origin,
                      shape_zyx=(14, 30, 34), center_zyx=(6, 17, 15), radius_vox=4.5)
    meta = preprocess_lesion(_row(case), CFG, tmp_path / "cache", seed=0)
    roi = load_roi(meta["roi_path"])
    assert roi.image.shape == roi.mask.shape == (8, 10, 12)  # roi_size_vox is (x, y, z)
    assert roi.image.dtype == np.float32 and np.all(np.isfinite(roi.image))
    np.testing.assert_array_equal(roi.spacing_mm, [1.5, 1.5, 1.5])
    # the lesion's centroid sits on the crop centre (size // 2) to within one voxel
    offset = _centroid_zyx(roi.mask) - np.array([4, 5, 6])
    assert np.all(np.abs(offset) <= 1.0), offset
    # and the recorded physical centre is the lesion's centre to within one target voxel
    mask = sitk.ReadImage(case["mask"])
    true_center = mask.TransformContinuousIndexToPhysicalPoint([15.0, 17.0, 6.0])
    assert np.all(np.abs(np.asarray(roi.center_mm) - true_center) <= 1.5)
    # bookkeeping that pretraining and extraction rely on
    assert set(ROI_INDEX_COLUMNS) - {"is_evaluation"} <= set(meta)
    voxels = int(sitk.GetArrayFromImage(mask).sum())
    assert meta["voxel_count"] == voxels
    assert meta["lesion_volume_ml"] == pytest.approx(voxels * np.prod(spacing) / 1000)
    assert meta["spacing_x"] == 1.5 and meta["orig_spacing_z"] == pytest.approx(spacing[2])  # NIfTI stores float32
    assert load_patches(meta["patches_path"]).shape == (3, 8, 10, 12)
    # the PyRadiomics crop keeps raw HU on the resampled grid
    rimg = sitk.ReadImage(meta["radiomics_image"])
    rmask = sitk.GetArrayFromImage(sitk.ReadImage(meta["radiomics_mask"]))
    assert rimg.GetSpacing() == (1.5, 1.5, 1.5)
    assert sitk.GetArrayFromImage(rimg)[rmask > 0].mean() > 90  # lesion is 40 + 80 HU, not normalised


def test_lesion_at_the_border_is_padded_centred_and_flagged(tmp_path, caplog):
    case = write_case(tmp_path, "B_1", np.random.default_rng(1), shape_zyx=(16, 16, 16), center_zyx=(0, 15, 8), radius_vox=3)
    with caplog.at_level(logging.WARNING):
        meta = preprocess_lesion(_row(case), PreprocessConfig(spacing_mm=(1, 1, 1), roi_size_vox=(12, 12, 12)), tmp_path / "c", 0)
    assert meta["touches_border"] is True
    assert "case B_1" in caplog.text and "touches the image border" in caplog.text
    roi = load_roi(meta["roi_path"])
    assert np.all(np.abs(_centroid_zyx(roi.mask) - 6) <= 1.0)
    # the lesion centroid is at z~1, so the first ~5 crop slices lie outside the scan: padded with the minimum
    pad = roi.image.min()
    assert np.all(roi.image[:4] == pad) and np.all(roi.mask[:4] == 0)
    assert np.all(roi.image[:, :, :][roi.mask > 0] > pad)


def test_seed_point_centres_the_roi_on_that_physical_point(tmp_path):
    case = write_case(tmp_path, "S_1", np.random.default_rng(2), spacing=(0.8, 0.8, 2.0), origin=(10, 20, 30),
                      shape_zyx=(12, 40, 40), center_zyx=(6, 22, 17), radius_vox=4)
    seed_mm = sitk.ReadImage(case["image"]).TransformContinuousIndexToPhysicalPoint([17.0, 22.0, 6.0])
    row = _row({**case, "mask": None, "mask_label": None}, seed_x=seed_mm[0], seed_y=seed_mm[1], seed_z=seed_mm[2])
    meta = preprocess_lesion(row, PreprocessConfig(spacing_mm=(1, 1, 1), roi_size_vox=(16, 16, 16)), tmp_path / "c", 0)
    roi = load_roi(meta["roi_path"])
    assert not roi.mask.any() and meta["radiomics_image"] == "" and meta["voxel_count"] == 0
    np.testing.assert_allclose(roi.center_mm, seed_mm, atol=1.0)
    bright = roi.image > np.percentile(roi.image, 97)
    assert np.all(np.abs(_centroid_zyx(bright) - 8) <= 1.5)


def test_mask_channel_and_both_mask_interpolations_keep_the_lesion(tmp_path):
    case = write_case(tmp_path, "M_1", np.random.default_rng(4), spacing=(0.5, 0.5, 0.5), shape_zyx=(30, 30, 30),
                      center_zyx=(15, 15, 15), radius_vox=6)
    sizes = {}
    for mode in ("linear_threshold", "nearest"):
        cfg = PreprocessConfig(spacing_mm=(1, 1, 1), roi_size_vox=(16, 16, 16), mask_interpolation=mode, mask_channel=True)
        roi = load_roi(preprocess_lesion(_row(case), cfg, tmp_path / mode, 0)["roi_path"])
        sizes[mode] = int(roi.mask.sum())
    # a 6-voxel-radius ball at 0.5 mm is ~113 mm^3: about 113 voxels of 1 mm^3 either way
    assert all(abs(v - 4 / 3 * np.pi * 3**3) < 25 for v in sizes.values()), sizes
