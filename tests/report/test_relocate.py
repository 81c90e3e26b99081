"""A finished run folder can be copied or moved: re-running it there redoes no stage (keys are content hashes)."""
from __future__ import annotations

import shutil

from tests.tinyrun import runnable_stages, tiny_config

from radae.runner import run_pipeline


def _rerun(runs_dir):
    cfg = tiny_config(runs_dir, f"stages=[{', '.join(runnable_stages())}]")
    return run_pipeline(cfg, quiet=True)


def test_copied_then_moved_run_folder_is_up_to_date(tiny_run, tmp_path):
    copy = tmp_path / "elsewhere" / "runs"
    shutil.copytree(tiny_run.parent, copy)  # runs_dir: the run folder and its cache
    ctx = _rerun(copy)
    assert ctx.extra.get("ran", []) == [], ctx.extra
    assert set(ctx.extra["skipped"]) == set(runnable_stages())
    moved = tmp_path / "moved" / "runs"
    moved.parent.mkdir()
    shutil.move(copy, moved)
    ctx = _rerun(moved)
    assert ctx.extra.get("ran", []) == [], ctx.extra
    # a real change still counts: another synthetic cohort re-runs ingest and everything after it
    cfg = tiny_config(moved, f"stages=[{', '.join(runnable_stages())}]", "data.synth.seed=1")
    assert "ingest" in run_pipeline(cfg, stages=["ingest"], quiet=True).extra["ran"]
