"""The shipped pretraining pipelines run end to end (ingest -> preprocess -> pretrain) on a tiny synthetic cohort."""
import json
from pathlib import Path

import pytest
import torch

from radae.config import load_pipeline
from radae.models import load_trained
from radae.runner import run_pipeline

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.mark.parametrize("name,kind", [("pretrain.yaml", "dae"), ("vae.yaml", "vae")])
def test_shipped_pipeline_trains_on_tiny_synthetic_cohort(tmp_path, name, kind):
    tiny = [f"runs_dir={tmp_path / 'runs'}", "threads=1", "data.synth.cases=4", "data.synth.size_vox=24",
            "preprocess.roi_size_vox=[16, 16, 16]", "preprocess.patches.per_volume=1", "preprocess.n_jobs=1",
            f"preprocess.cache_dir={tmp_path / 'cache'}", "pretrain.model.channels=[4, 8]", "pretrain.model.strides=[2, 2]",
            "pretrain.steps=3", "pretrain.eval_every=3", "pretrain.warmup_steps=1"]
    cfg = load_pipeline(PIPELINES / name, overrides=tiny)
    assert cfg.pretrain.model.kind == kind
    ctx = run_pipeline(cfg)
    assert ctx.extra["ran"] == ["ingest", "preprocess", "pretrain"]
    summary = json.loads((ctx.run_dir / "pretrain" / "summary.json").read_text())
    assert summary["steps_done"] == 3 and summary["excluded_evaluation_patients"] >= 1
    model, meta = load_trained(ctx.run_dir)
    assert meta["kind"] == kind and meta["roi_size_zyx"] == (16, 16, 16)
    with torch.no_grad():
        assert model.encode(torch.zeros(1, 1, 16, 16, 16)).shape == (1, cfg.pretrain.model.latent_dim)
