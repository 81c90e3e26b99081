"""Issue 15 item 5: one autoencoder is not trained on MR and PET together unless the config asks for it."""
from __future__ import annotations

import json

import pytest

from tests.train.conftest import make_preprocessed_run, tiny_yaml
from radae.config import load_pipeline
from radae.util.errors import TrainError
from radae.train.loop import run_training


def test_mixed_modality_pretraining_is_refused_unless_allowed(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=4, modalities=("MR", "PET"))
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={"allow_mixed_modalities": False}))
    with pytest.raises(TrainError, match=r"mix modalities \(MR, PET\).*pretrain\.allow_mixed_modalities: true"):
        run_training(cfg, run_dir)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={"allow_mixed_modalities": True, "steps": 2}))
    run_training(cfg, run_dir)
    assert json.loads((run_dir / "pretrain" / "summary.json").read_text())["modalities"] == ["MR", "PET"]
