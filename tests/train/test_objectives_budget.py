"""Masked / contractive objectives train; epochs and wall-clock budgets; diagnostics.json of a real run."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.train.conftest import make_preprocessed_run, tiny_yaml
from radae.config import load_pipeline
from radae.train.loop import run_training


def _train(run_dir):
    rows = pd.read_csv(run_dir / "pretrain" / "metrics.csv")
    return rows[rows.split == "train"]


@pytest.mark.parametrize("variant", [
    {"noise": {"kind": "mask", "mask_ratio": 0.4, "mask_block_vox": 4}},
    {"model": {"contractive": {"weight": 0.01, "projections": 1}}},
])
def test_masked_and_contractive_objectives_reduce_their_loss(tmp_path, variant):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=6, patches_per=3)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs",
                                  pretrain={**variant, "steps": 36, "val_fraction": 0.0, "checkpoint_every": 100}))
    run_training(cfg, run_dir)
    train = _train(run_dir)
    assert np.mean(train["loss"].tail(6)) < 0.5 * np.mean(train["loss"].head(3))
    if "contractive" in variant.get("model", {}):
        assert (train["contractive"] > 0).all()  # the penalty is part of the objective and logged
        assert (train["loss"] > train["recon"]).all()
    else:
        assert (train["contractive"] == 0).all()


def test_epochs_budget_plans_the_steps_and_writes_diagnostics(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=6, patches_per=2)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={"epochs": 2, "steps": 999}))
    s = run_training(cfg, run_dir)
    n_train = s["train_items"]
    assert s["steps_planned"] == math.ceil(2 * n_train / 4) == s["steps_done"]
    assert s["budget"]["planned_by"] == "epochs=2"
    diag = json.loads((run_dir / "pretrain" / "diagnostics.json").read_text())
    assert set(diag["levels"]) == {"clean", "sigma=0.05", "sigma=0.15"}
    for level in ("sigma=0.05", "sigma=0.15"):
        row = diag["levels"][level]
        assert row["denoise_gain_db"] == pytest.approx(row["recon"]["psnr_db"] - row["noisy"]["psnr_db"])
        assert {"blur", "mean_image"} <= set(row)
    assert diag["convergence"]["converged"] in (True, False) and diag["convergence"]["rule"]
    assert s["converged"] == diag["convergence"]["converged"]


def test_max_minutes_ends_the_run_early_and_says_so(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=4, patches_per=1)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs",
                                  pretrain={"steps": 100000, "max_minutes": 0.0005, "checkpoint_every": 100000}))
    s = run_training(cfg, run_dir)
    assert s["stopped_by_time"] and s["steps_done"] < 100000
    assert (run_dir / "pretrain" / "model.pt").is_file()
