"""scan_folder on NIfTI layouts and DICOM studies in tmp_path; the shipped data manifests are current and valid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from tests.io.dicom_factory import write_ct_series, write_rtstruct, write_seg

from radae.util.errors import ManifestError
from radae.io import read_image, read_mask
from radae.data.manifest import load_manifest
from radae.data.scan import COLUMNS, build_data_manifests, guess_modality, scan_folder, scan_rows

PROJECT = Path(__file__).resolve().parents[2]


def _nii(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


def _mask(labels=(1,)) -> np.ndarray:
    m = np.zeros((4, 5, 6), np.uint8)
    for i, lab in enumerate(labels):
        m[1 + i, 1:3, 1:3] = lab
    return m


def test_patient_folders_with_named_pairs(tmp_path):
    root = tmp_path / "data"
    img = np.zeros((4, 5, 6), np.float32)
    _nii(root / "P01" / "MR_T1_image.nii.gz", img)
    _nii(root / "P01" / "MR_T1_mask.nii.gz", _mask())
    _nii(root / "P01" / "PET_image.nii.gz", img)
    _nii(root / "P01" / "PET_mask.nii.gz", _mask())
    _nii(root / "P02" / "ct.nii.gz", img)
    _nii(root / "P02" / "ct_seg.nii.gz", _mask((1, 2)))  # two lesions -> two rows
    _nii(root / "P02" / "extra_scan.nrrd", img)  # no mask: left out
    out = tmp_path / "manifests" / "scan.csv"
    df = scan_folder(root, out)
    assert list(df.columns) == COLUMNS
    assert list(df["case_id"]) == ["P01_MR_T1", "P01_PET", "P02_ct_l1", "P02_ct_l2"]
    assert list(df["patient_id"]) == ["P01", "P01", "P02", "P02"]
    assert list(df["modality"]) == ["MR", "PET", "CT", "CT"]
    assert list(df["mask_label"]) == [1, 1, 1, 2]
    assert df.loc[0, "image"] == "../data/P01/MR_T1_image.nii.gz"  # relative to the manifest's folder
    far = scan_folder(root, tmp_path / "x" / "y" / "z" / "scan.csv")
    assert far.loc[0, "image"] == str(root / "P01" / "MR_T1_image.nii.gz")  # 3 levels up: absolute
    m = load_manifest(out)
    for _, row in m.iterrows():
        image = read_image(row["image"])
        assert read_mask(row["mask"], row["mask_label"], image).array.sum() == 4


def test_parallel_folders_nnunet_and_lone_mask(tmp_path):
    img = np.zeros((4, 5, 6), np.float32)
    _nii(tmp_path / "a" / "images" / "case01.nii.gz", img)
    _nii(tmp_path / "a" / "masks" / "case01.nii.gz", _mask())
    _nii(tmp_path / "a" / "images" / "case02.nii.gz", img)
    _nii(tmp_path / "a" / "masks" / "case02.nii.gz", _mask())
    _nii(tmp_path / "b" / "imagesTr" / "lung_004_0000.nii.gz", img)
    _nii(tmp_path / "b" / "labelsTr" / "lung_004.nii.gz", _mask())
    _nii(tmp_path / "c" / "nifti" / "phantom.nii.gz", img)
    _nii(tmp_path / "c" / "nifti" / "mask.nii.gz", _mask())
    a = scan_rows(tmp_path / "a")
    assert list(a["case_id"]) == ["case01", "case02"]
    assert [Path(p).parent.name for p in a["mask"]] == ["masks", "masks"]
    assert [Path(p).name for p in a["image"]] == ["case01.nii.gz", "case02.nii.gz"]
    b = scan_rows(tmp_path / "b")
    assert b.loc[0, "image"].endswith("lung_004_0000.nii.gz") and b.loc[0, "mask"].endswith("labelsTr/lung_004.nii.gz")
    c = scan_rows(tmp_path / "c")
    assert c.loc[0, "image"].endswith("nifti/phantom.nii.gz") and c.loc[0, "modality"] == "UNKNOWN"
    out = scan_folder(tmp_path / "a", tmp_path / "a.parquet")
    assert pd.read_parquet(tmp_path / "a.parquet")["case_id"].tolist() == out["case_id"].tolist()


def test_dicom_study_with_rtstruct_and_seg(tmp_path):
    root = tmp_path / "study"
    slices = write_ct_series(root / "CT", np.zeros((5, 8, 8), np.int16))
    write_rtstruct(root / "RS" / "rs.dcm", slices, {"GTV": [(2, [(1, 1), (5, 1), (5, 5)])], "Body": [(1, [(0, 0), (7, 0), (7, 7)])]})
    lesion = np.zeros((5, 8, 8), np.uint8)
    lesion[1:3, 2:4, 2:4] = 1
    write_seg(root / "SEG" / "seg.dcm", slices, {"Tumour": lesion})
    other = write_ct_series(root / "CT2", np.zeros((3, 4, 4), np.int16))  # no structures: left out
    df = scan_folder(root, tmp_path / "m.csv")
    assert sorted(df["mask_label"].astype(str)) == ["1", "Body", "GTV"]
    assert set(df["image"]) == {"study/CT"} and set(df["series_uid"]) == {slices[0].SeriesInstanceUID}
    assert set(df["patient_id"]) == {"TEST001"} and set(df["modality"]) == {"CT"}
    assert other[0].SeriesInstanceUID not in set(df["series_uid"])
    only = scan_rows(root, roi_pattern="gtv|tum")
    assert sorted(only["mask_label"].astype(str)) == ["1", "GTV"]
    m = load_manifest(tmp_path / "m.csv")
    for _, row in m.iterrows():
        image = read_image(row["image"], series_uid=row["series_uid"])
        assert read_mask(row["mask"], row["mask_label"], image, image_path=row["image"]).array.any()


def test_nothing_to_scan(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ManifestError, match=r"no image/mask pairs and no DICOM series with RTSTRUCT/SEG found"):
        scan_folder(tmp_path, tmp_path / "m.csv")
    with pytest.raises(ManifestError, match=r"not found"):
        scan_folder(tmp_path / "nope", tmp_path / "m.csv")


def test_guess_modality():
    assert guess_modality("MR_T1_image") == "MR"
    assert guess_modality("PET_image") == "PET"
    assert guess_modality("patient", "ct") == "CT"
    assert guess_modality("pet_ct_fused") == "UNKNOWN"  # ambiguous


# ----------------------------------------------------------------------------- shipped manifests
MANIFESTS = ("sts_mr.csv", "sts_pet.csv", "ibsi_ct_phantom_nifti.csv", "ibsi_ct_phantom_dicom.csv")


def test_shipped_data_manifests_are_regenerated_exactly(data_root):
    built = build_data_manifests(data_root)
    assert sorted(built) == sorted(MANIFESTS)
    for name, df in built.items():
        on_disk = (PROJECT / "data_manifests" / name).read_text()
        assert df.to_csv(index=False) == on_disk, f"{name} is stale: run radae manifest examples"


def test_shipped_data_manifests_validate(data_root):
    sts = dict(required_columns=("LungMets", "os_time_days", "os_event", "age"), binary_columns=("LungMets", "os_event", "sex_male"),
               numeric_columns=("age", "grade"), nonnegative_columns=("os_time_days",))
    for name in ("sts_mr.csv", "sts_pet.csv"):
        df = load_manifest(PROJECT / "data_manifests" / name, **sts)
        assert len(df) == 34 and df["patient_id"].nunique() == 34
        assert int(df["LungMets"].sum()) == 13 and int(df["os_event"].sum()) == 11
        assert df["image"].str.startswith(str(data_root)).all()
    pet = load_manifest(PROJECT / "data_manifests" / "sts_pet.csv")
    assert set(pet["modality"]) == {"PET"}
    dcm = load_manifest(PROJECT / "data_manifests" / "ibsi_ct_phantom_dicom.csv").iloc[0]
    nii = load_manifest(PROJECT / "data_manifests" / "ibsi_ct_phantom_nifti.csv").iloc[0]
    assert dcm["mask_label"] == "GTV-1" and Path(dcm["image"]).is_dir()
    assert Path(nii["image"]).name == "phantom.nii.gz" and nii["case_id"] == dcm["case_id"] == "ibsi_ct_pat1"
