"""MedMNIST-style npz -> NIfTI + manifest: synthetic round trip and the real AdrenalMNIST3D file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radae.util.errors import IngestError
from radae.data.npz import dataset_prefix, import_npz
from radae.io import read_image, read_mask
from radae.data.manifest import load_manifest


@pytest.fixture()
def npz(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((4, 8, 10, 12), np.uint8)
    images[0, 2:5, 3:7, 4:9] = 255
    images[1, 1:3, 1:3, 1:3] = 255
    images[2] = rng.integers(0, 100, size=(8, 10, 12))  # intensity volume: threshold keeps > 0.5 max
    # images[3] stays empty: no lesion under the threshold rule
    labels = np.array([[1], [0], [1], [0]], np.uint8)
    path = tmp_path / "toymnist3d.npz"
    np.savez_compressed(path, train_images=images, train_labels=labels, val_images=images[:2], val_labels=labels[:2])
    return path, images, labels


def test_round_trip_threshold(npz, tmp_path):
    path, images, labels = npz
    out = tmp_path / "out"
    df = import_npz(path, "train", out, (0.5, 0.75, 2.0), "threshold")
    assert list(df["case_id"]) == ["toy_train_0001", "toy_train_0002", "toy_train_0003"]  # empty volume 4 skipped
    assert list(df["npz_index"]) == [0, 1, 2] and list(df["label"]) == [1, 0, 1]
    assert (df["patient_id"] == df["case_id"]).all() and (df["modality"] == "CT").all()
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk["image"]) == list(df["image"]) == [f"images/toy_train_000{i}.nii.gz" for i in (1, 2, 3)]
    m = load_manifest(out / "manifest.csv", required_columns=("label",), binary_columns=("label",))
    for i, row in m.iterrows():
        img = read_image(row["image"], case_id=row["case_id"])
        assert img.array.dtype == np.float32 and np.array_equal(img.array, images[i].astype(np.float32))
        assert img.spacing_mm == pytest.approx((0.5, 0.75, 2.0)) and img.array.shape == (8, 10, 12)
        mask = read_mask(row["mask"], row["mask_label"], img, case_id=row["case_id"])
        assert np.array_equal(mask.array, (images[i] > 0.5 * images[i].max()).astype(np.uint8))
    assert int(read_mask(m.loc[0, "mask"], 1, read_image(m.loc[0, "image"])).array.sum()) == 3 * 4 * 5


def test_cube_rule_and_prefix(npz, tmp_path):
    path, images, _ = npz
    df = import_npz(path, "val", tmp_path / "cube", (1, 1, 1), "cube", prefix="toyset")
    assert list(df["case_id"]) == ["toyset_val_0001", "toyset_val_0002"]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cube" / df.loc[1, "mask"])))
    assert mask.shape == (8, 10, 12) and mask.min() == 1


def test_errors(npz, tmp_path):
    path, _, _ = npz
    with pytest.raises(IngestError, match=r"no arrays test_images/test_labels \(splits present: train, val; "):
        import_npz(path, "test", tmp_path / "x", (1, 1, 1), "threshold")
    with pytest.raises(IngestError, match=r"mask_rule 'otsu' unknown -> use one of threshold, cube"):
        import_npz(path, "train", tmp_path / "x", (1, 1, 1), "otsu")
    with pytest.raises(IngestError, match=r"spacing_mm .* three positive numbers"):
        import_npz(path, "train", tmp_path / "x", (1, 0, 1), "threshold")
    flat = tmp_path / "flat.npz"
    np.savez(flat, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.zeros((3, 1)))
    with pytest.raises(IngestError, match=r"shape \(3, 28, 28\); expected \(N, D, H, W\) 3D volumes"):
        import_npz(flat, "train", tmp_path / "x", (1, 1, 1), "threshold")
    with pytest.raises(IngestError, match=r"npz not found"):
        import_npz(tmp_path / "nope.npz", "train", tmp_path / "x", (1, 1, 1), "threshold")


def test_prefix_from_file_name():
    assert dataset_prefix("adrenalmnist3d_64_trainval.npz") == "adrenal"
    assert dataset_prefix("organmnist3d.npz") == "organ"
    assert dataset_prefix("my data.npz") == "my_data"


def test_real_adrenalmnist3d(data_root, tmp_path):
    src = data_root / "medmnist" / "adrenalmnist3d_trainval.npz"
    df = import_npz(src, "val", tmp_path / "adrenal", (1.0, 1.0, 1.0), "threshold")
    assert len(df) == 98 and df["case_id"].iloc[0] == "adrenal_val_0001"
    assert df["label"].value_counts().to_dict() == {0: 76, 1: 22}
    with np.load(src) as z:
        vol = z["val_images"][17]
    row = df.iloc[17]
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "adrenal" / row["image"])))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "adrenal" / row["mask"])))
    assert img.shape == (28, 28, 28) and np.array_equal(img, vol.astype(np.float32))
    assert np.array_equal(mask, (vol > 127).astype(np.uint8)) and mask.sum() > 0
    m = load_manifest(tmp_path / "adrenal" / "manifest.csv", required_columns=("label",), binary_columns=("label",))
    assert len(m) == 98


@pytest.mark.slow
def test_real_adrenalmnist3d_64(data_root, tmp_path):
    src = data_root / "medmnist" / "adrenalmnist3d_64_trainval.npz"
    df = import_npz(src, "val", tmp_path / "adrenal64", (0.5, 0.5, 0.5), "threshold")
    assert len(df) == 98
    img = sitk.ReadImage(str(tmp_path / "adrenal64" / df["image"].iloc[0]))
    assert img.GetSize() == (64, 64, 64) and img.GetSpacing() == (0.5, 0.5, 0.5)
