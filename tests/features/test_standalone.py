"""`radae features --manifest ... --model model.pt`: learned features too, preprocessed as the model was trained."""
from __future__ import annotations

import pandas as pd

from radae.stages import ingest, preprocess

from .conftest import ROI, build_tiny_model

STAGE_FNS = {"ingest": ingest.run, "preprocess": preprocess.run}  # what the CLI passes


def test_manifest_features_with_a_model(tmp_path):
    from radae.config import PreprocessConfig
    from radae.features.standalone import manifest_features
    from radae.models.checkpoint import save_model
    from radae.data.synth import generate_cohort

    generate_cohort(tmp_path / "syn", cases=4, seed=0, size_vox=24, unlabeled=0)
    pre = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), roi_size_vox=(ROI, ROI, ROI), patches={"per_volume": 0})
    model = tmp_path / "model.pt"
    save_model(model, build_tiny_model(), None, config_hash="t", step=0, extra={"preprocess": pre.model_dump(mode="json"), "seed": 0})
    res = manifest_features(tmp_path / "syn" / "manifest.csv", tmp_path / "f.csv", STAGE_FNS, model=model, quiet=True)
    n = len(pd.read_csv(tmp_path / "syn" / "manifest.csv"))
    latent = pd.read_csv(tmp_path / "f_latent.csv")
    assert len(latent) == n and any(c.startswith("latent_") for c in latent.columns)
    assert len(pd.read_csv(tmp_path / "f.csv")) == n
    assert res["summary"]["latent"]["extracted"] == n
    rois = pd.read_parquet(res["work"] / "preprocess" / "rois.parquet")
    assert len(rois) == n  # preprocessed with the model's stored settings


def test_model_without_preprocess_settings_is_refused(tmp_path):
    import pytest

    from radae.util.errors import ConfigError
    from radae.features.standalone import manifest_features
    from radae.models.checkpoint import save_model

    save_model(tmp_path / "m.pt", build_tiny_model(), None, config_hash="t", step=0, extra={})
    (tmp_path / "x.csv").write_text("case_id,patient_id,image,mask,modality\n")
    with pytest.raises(ConfigError, match="no stored preprocess settings"):
        manifest_features(tmp_path / "x.csv", tmp_path / "f.csv", STAGE_FNS, model=tmp_path / "m.pt")
