"""The real-data pipelines (pipelines/sts*.yaml, pipelines/adrenal.yaml) load and their data resolve.

Fast: no stage is run. Skips without the shared data (``data_root`` fixture), fails then if RADAE_REQUIRE_DATA=1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radae.config import load_pipeline
from radae.data.sources import evaluation_patients, validated_manifest

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
STS = ("sts.yaml", "sts_mr.yaml", "sts_pet.yaml")
STS_PATIENTS = 34


@pytest.mark.parametrize("name", STS)
def test_sts_pipeline_loads_and_manifest_resolves(name, data_root, tmp_path):
    cfg = load_pipeline(PIPELINES / name, overrides=[f"runs_dir={tmp_path}"])
    assert cfg.data.manifest is not None and cfg.data.manifest.is_file()
    assert cfg.extract.radiomics.params is not None and cfg.extract.radiomics.params.is_file()
    df = validated_manifest(cfg, check_files=True)
    modality = "PET" if "pet" in name else "MR"
    assert set(df["modality"].str.upper()) == {modality}
    assert len(df) == STS_PATIENTS and df["patient_id"].nunique() == STS_PATIENTS
    for col in ("image", "mask"):
        paths = [Path(p) for p in df[col]]
        assert all(p.is_file() for p in paths)
        assert all(p.resolve().is_relative_to(data_root.resolve()) for p in paths)
    # the endpoints the README states: 13/34 LungMets, 11/34 deaths
    assert int(df["LungMets"].sum()) == 13
    assert int(df["os_event"].sum()) == 11
    assert (df["os_time_days"] >= 0).all()
    # every patient is an evaluation patient, and pretraining on them is an explicit, recorded choice
    assert evaluation_patients(cfg) == set(df["patient_id"].astype(str))
    assert cfg.pretrain.include_evaluation_patients is True
    b = cfg.benchmark
    assert b.classification.label == "LungMets" and b.survival.time == "os_time_days"
    assert {"learned", "handcrafted", "clinical"} <= set(b.feature_sets)
    assert b.cv.folds <= 13  # no more folds than positives


def test_sts_mr_and_default_sts_differ_only_in_name():
    a = load_pipeline(PIPELINES / "sts.yaml", check_files=False).model_dump(mode="json")
    b = load_pipeline(PIPELINES / "sts_mr.yaml", check_files=False).model_dump(mode="json")
    assert a.pop("name") == "sts" and b.pop("name") == "sts_mr"
    assert a == b


def test_adrenal_pipeline_loads_and_npz_resolves(data_root, tmp_path):
    cfg = load_pipeline(PIPELINES / "adrenal.yaml", overrides=[f"runs_dir={tmp_path}"])
    src = cfg.data.npz
    assert src is not None and src.path.is_file()
    assert src.path.resolve().is_relative_to(data_root.resolve())
    assert cfg.extract.radiomics.params is not None and cfg.extract.radiomics.params.is_file()
    side = cfg.preprocess.roi_size_vox[0]
    with np.load(src.path, allow_pickle=False) as z:
        for split in src.splits:
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
            assert images.shape[1:] == (side, side, side) and len(labels) == len(images)
            assert set(np.unique(labels)) <= {0, 1}
        n_val_pos = int(z["val_labels"].sum())
    assert set(src.evaluation_splits) <= set(src.splits)
    assert n_val_pos >= cfg.benchmark.cv.folds
    assert cfg.pretrain.include_evaluation_patients is False
    assert cfg.benchmark.classification.label == "label" and cfg.benchmark.survival is None
