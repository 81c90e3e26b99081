import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.train.conftest import make_preprocessed_run, tiny_yaml
from radae.config import load_pipeline
from radae.util.errors import TrainError
from radae.models import load_trained
from radae.runner import run_pipeline
from radae.train.augment import augment_batch
from radae.train.data import StepOrder
from radae.train.loop import run_training

ROOT = Path(__file__).resolve().parents[2]


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "pretrain" / "model.pt", weights_only=True)["state_dict"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_reconstruction_loss_goes_down_on_synthetic_data(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=6, patches_per=3)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs",
                                  pretrain={"steps": 36, "val_fraction": 0.0, "checkpoint_every": 100}))
    summary = run_training(cfg, run_dir)
    losses = _train_losses(run_dir)
    assert len(losses) == 36
    assert np.mean(losses[-6:]) < 0.35 * np.mean(losses[:3])
    assert summary["steps_done"] == 36 and summary["val_items"] == 0 and summary["patches_per_s"] > 0


def test_vae_stage_writes_everything_and_excludes_evaluation_patients(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=6, evaluation=("P004", "P005"), modalities=("CT", "MR", "PET"))
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs",
                                  pretrain={"model": {"kind": "vae", "kl_warmup_steps": 3}, "preview_every": 3}))
    ctx = run_pipeline(cfg)
    assert ctx.extra["ran"] == ["pretrain"]
    out = run_dir / "pretrain"
    for f in ("model.pt", "checkpoints/last.pt", "metrics.csv", "metrics.jsonl", "summary.json", "failures.csv"):
        assert (out / f).is_file(), f
    assert sorted(p.name for p in (out / "previews").glob("*.png")) == ["step_0000003.png", "step_0000006.png"]
    s = json.loads((out / "summary.json").read_text())
    assert s["excluded_evaluation_patients"] == 2 and s["train_patients"] + s["val_patients"] == 4
    assert s["train_items"] + s["val_items"] == 4 * 3  # ROI + 2 patches per remaining patient
    assert s["val_psnr_noisy_db"] is not None and s["val_psnr_recon_db"] is not None
    assert s["n_params"] > 0 and 0 <= s["data_wait_fraction"] < 1
    csv = pd.read_csv(out / "metrics.csv")
    assert set(csv["split"]) == {"train", "val"} and csv.loc[csv.split == "train", "kl"].notna().all()
    assert csv.loc[csv.split == "train", "beta"].tolist()[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    model, meta = load_trained(run_dir)
    assert meta["kind"] == "vae" and meta["in_channels"] == 1 and meta["roi_size_zyx"] == (16, 16, 16)
    assert meta["sha256"] == s["model_sha256"] and meta["config_hash"] == s["config_hash"]
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.encode(x), model.posterior(x)[0])
    # up to date on a second run; the switch to include evaluation patients retrains with them
    assert run_pipeline(cfg).extra.get("skipped") == ["pretrain"]
    cfg2 = load_pipeline(tmp_path / "p.yaml", overrides=["pretrain.include_evaluation_patients=true"])
    run_pipeline(cfg2)
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["excluded_evaluation_patients"] == 0 and s2["include_evaluation_patients"] is True
    assert s2["train_items"] + s2["val_items"] == 6 * 3


def test_mask_channel_gives_two_input_channels_and_skips_maskless_patches(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=4)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", mask_channel=True, pretrain={"steps": 2}))
    s = run_training(cfg, run_dir)
    assert s["in_channels"] == 2 and s["patches_skipped_no_mask"] == 8 and s["train_items"] + s["val_items"] == 4
    _, meta = load_trained(run_dir / "pretrain" / "model.pt")
    assert meta["in_channels"] == 2 and meta["extra"]["mask_channel"] is True


def test_missing_roi_file_is_a_failure_row_not_a_crash(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    df = make_preprocessed_run(run_dir, patients=4)
    Path(df.loc[1, "roi_path"]).unlink()
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={"steps": 2}))
    run_pipeline(cfg)
    fails = pd.read_csv(run_dir / "pretrain" / "failures.csv")
    assert fails["case_id"].tolist() == ["P001_L1"] and "unreadable" in fails["message"][0]


def test_stream_loader_with_worker_equals_resident(tmp_path):
    runs = {}
    for loader, workers in (("resident", 0), ("stream", 1)):
        run_dir = tmp_path / loader / "runs" / "t"
        make_preprocessed_run(run_dir, patients=4, modalities=("MR", "PET"))
        cfg = load_pipeline(tiny_yaml(tmp_path / loader / "p.yaml", tmp_path / loader / "runs",
                                      pretrain={"loader": loader, "num_workers": workers, "steps": 4}))
        assert run_training(cfg, run_dir)["loader"] == loader
        runs[loader] = _weights(run_dir)
    assert _same_weights(runs["resident"], runs["stream"])


@pytest.mark.slow  # over 10 s: a subprocess run or a whole tiny pipeline
def test_kill_minus_9_and_resume_gives_the_same_weights(tmp_path):
    pre = {"steps": 40, "checkpoint_every": 4, "eval_every": 10, "model": {"dropout": 0.1}}
    # uninterrupted reference
    ref_dir = tmp_path / "ref" / "runs" / "t"
    make_preprocessed_run(ref_dir, modalities=("CT", "MR"))
    run_training(load_pipeline(tiny_yaml(tmp_path / "ref" / "p.yaml", tmp_path / "ref" / "runs", pretrain=pre)), ref_dir)
    # same run in a subprocess, killed with SIGKILL as soon as the first checkpoint exists
    run_dir = tmp_path / "k" / "runs" / "t"
    make_preprocessed_run(run_dir, modalities=("CT", "MR"))
    yaml_path = tiny_yaml(tmp_path / "k" / "p.yaml", tmp_path / "k" / "runs", pretrain=pre)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "radae.cli", "run", str(yaml_path), "--stages", "pretrain", "-q"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run_dir / "pretrain" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (run_dir / "pretrain" / "model.pt").exists()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 4 <= killed_at < 40
    # resume through the runner, as `radae run ... --resume` does
    ctx = run_pipeline(load_pipeline(yaml_path), resume=True)
    assert ctx.extra["ran"] == ["pretrain"]
    summary = json.loads((run_dir / "pretrain" / "summary.json").read_text())
    assert summary["resumed_from_step"] == killed_at and summary["steps_done"] == 40
    assert _same_weights(_weights(ref_dir), _weights(run_dir))
    steps = [json.loads(r)["step"] for r in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()
             if json.loads(r)["split"] == "train"]
    assert steps == list(range(1, 41))  # rows the killed process logged after its checkpoint were dropped


def test_checkpoint_from_another_config_is_refused(tmp_path, tiny_run):
    yaml_path, run_dir = tiny_run
    run_pipeline(load_pipeline(yaml_path))
    other = load_pipeline(yaml_path, overrides=["pretrain.model.channels=[4, 16]"])
    with pytest.raises(TrainError, match="another model/training config") as e:
        run_training(other, run_dir, resume=True)
    assert "last.pt" in str(e.value) and "\n" not in str(e.value)
    # bookkeeping fields do not invalidate a checkpoint
    run_training(load_pipeline(yaml_path, overrides=["pretrain.checkpoint_every=7"]), run_dir, resume=True)


def test_foreign_or_pickled_checkpoint_is_never_unpickled(tmp_path, tiny_run):
    yaml_path, run_dir = tiny_run
    ckpt = run_dir / "pretrain" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"format": "radae-checkpoint", "payload": Path("/etc/passwd")}, ckpt)  # an arbitrary object
    with pytest.raises(TrainError, match="not a readable radae"):
        run_training(load_pipeline(yaml_path), run_dir, resume=True)
    torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.raises(TrainError, match="not a radae-checkpoint file"):
        run_training(load_pipeline(yaml_path), run_dir, resume=True)


def test_step_order_is_disjoint_across_ranks_and_covers_each_epoch():
    order = StepOrder(n_items=10, batch=2, world=2, seed=3)
    first_epoch = np.concatenate([order.indices(s, r) for s in (1, 2) for r in (0, 1)] + [order.indices(3, 0)])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert np.array_equal(order.indices(7, 1), StepOrder(10, 2, 2, 3).indices(7, 1))


def test_augmentation_is_reproducible_and_keeps_mask_binary():
    x = torch.rand(4, 2, 6, 6, 6)
    x[:, 1] = (x[:, 1] > 0.5).float()
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert set(a[:, 1].unique().tolist()) <= {0.0, 1.0}
    # flips/rotations only permute the mask's voxels
    assert torch.equal(a[:, 1].flatten(1).sum(1), x[:, 1].flatten(1).sum(1))
    # image channel: a permutation of the voxels, then x * scale + shift with scale in [0.9, 1.1], shift in [-0.05, 0.05]
    xs, as_ = x[:, 0].flatten(1).sort(1).values.double(), a[:, 0].flatten(1).sort(1).values.double()
    for i in range(4):
        design = torch.stack([xs[i], torch.ones_like(xs[i])], 1)
        scale, shift = torch.linalg.lstsq(design, as_[i][:, None]).solution.flatten()
        assert torch.allclose(design @ torch.stack([scale, shift]), as_[i], atol=1e-5)
        assert 0.9 <= float(scale) <= 1.1 and -0.05 <= float(shift) <= 0.05


@pytest.mark.slow
def test_ddp_two_gloo_processes_train_and_write_one_checkpoint(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, modalities=("CT", "MR"))
    yaml_path = tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={"steps": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "radae.cli", "run", str(yaml_path), "--stages", "pretrain", "-q"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    out = run_dir / "pretrain"
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.pt"]
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and s["global_batch"] == 8 and s["steps_done"] == 4
    assert json.loads((out / "_stage.json").read_text())["status"] == "done"
    assert len([r for r in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in r]) == 4  # rank 0 only
    model, meta = load_trained(run_dir)
    assert meta["step"] == 4
    # the runner sees the torchrun result as up to date
    assert run_pipeline(load_pipeline(yaml_path)).extra.get("skipped") == ["pretrain"]


@pytest.mark.parametrize("variant", [{"loss": "ssim_mse", "model": {"sparse": {"kind": "kl", "weight": 0.1}}},
                                     {"loss": "l1", "model": {"sparse": {"kind": "l1"}, "latent_mode": "pool",
                                                              "upsample": "upsample"}, "augment": False}])
def test_loss_and_model_variants_train(tmp_path, variant):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=3)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={**variant, "steps": 3}))
    run_training(cfg, run_dir)
    rows = pd.read_csv(run_dir / "pretrain" / "metrics.csv")
    train = rows[rows.split == "train"]
    assert len(train) == 3 and np.isfinite(train["loss"]).all() and (train["sparse"] > 0).all()


def test_early_stopping_keeps_the_best_weights(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=6)
    # a learning rate far too high makes validation loss rise after the first evaluations
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={
        "steps": 60, "eval_every": 1, "early_stopping_patience": 2, "lr": 0.5, "warmup_steps": 0, "grad_clip": 100.0,
        "model": {"norm": "none"}}))
    s = run_training(cfg, run_dir)
    assert s["stopped_early"] and s["steps_done"] < 60 and s["weights"] == "best_val"
    assert s["steps_done"] == s["best_step"] + 2
    val = pd.read_csv(run_dir / "pretrain" / "metrics.csv").query("split == 'val'")
    assert val["loss"].min() == pytest.approx(s["best_val_loss"])
    assert int(val.loc[val["loss"].idxmin(), "step"]) == s["best_step"]
    assert torch.load(run_dir / "pretrain" / "model.pt", weights_only=True)["extra"]["weights"] == "best_val"


def test_denoising_gain_on_synthetic_blobs_with_heavy_noise(tmp_path):
    """Known signal: smooth blobs are easy to reconstruct, so a DAE must beat the noisy input clearly."""
    run_dir = tmp_path / "runs" / "t"
    make_preprocessed_run(run_dir, patients=30, patches_per=3)
    cfg = load_pipeline(tiny_yaml(tmp_path / "p.yaml", tmp_path / "runs", pretrain={
        "steps": 200, "eval_every": 200, "log_every": 50, "val_fraction": 0.2, "noise": {"sigma": [0.2, 0.3]},
        "checkpoint_every": 1000, "model": {"channels": [8, 16], "latent_dim": 32}}))
    s = run_training(cfg, run_dir)
    assert s["val_psnr_noisy_db"] < 8.0
    assert s["val_psnr_gain_db"] > 5.0
