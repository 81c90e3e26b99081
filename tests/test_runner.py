"""The runner: stage keys, skipping what is up to date, --force, per-section re-runs, failures.csv, the run lock.

ingest and preprocess are the real stages on a tiny synthetic cohort; pretrain and extract keep their registered
upstream/sections (what decides re-runs) but get a cheap body so that only the runner's logic is timed here.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from radae.config import load_pipeline
from radae.util.errors import RadaeError, RunLockedError
from radae.util.fsutil import TEMP_PREFIX, run_lock
from radae.runner import FAILURE_COLUMNS, STAGE_REGISTRY, run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def _yaml(tmp_path, stages=("ingest", "preprocess", "pretrain", "extract")) -> Path:
    doc = {"name": "r", "runs_dir": str(tmp_path / "runs"), "seed": 0, "stages": list(stages),
           "data": {"synth": {"cases": 4, "seed": 1, "size_vox": 24}},
           "preprocess": {"spacing_mm": [2, 2, 2], "roi_size_vox": [8, 8, 8], "patches": {"per_volume": 1}}}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture
def light_stages(monkeypatch):
    """pretrain/extract with their real keying but a body that records the call and writes one file."""
    calls = []

    def body(name):
        def fn(ctx):
            calls.append(name)
            (ctx.stage_dir() / "out.txt").write_text(f"{name} {ctx.cfg.seed}")
            if name == "extract":
                rois = pd.read_parquet(ctx.run_dir / "preprocess" / "rois.parquet")
                ctx.fail(rois["case_id"].iloc[0], "pretend this lesion failed", rois["roi_path"].iloc[0])
        return fn

    for name in ("pretrain", "extract"):
        monkeypatch.setitem(STAGE_REGISTRY, name, dataclasses.replace(STAGE_REGISTRY[name], fn=body(name)))
    return calls


def _ran(p, overrides=(), **kw):
    ctx = run_pipeline(load_pipeline(p, overrides=list(overrides)), **kw)
    return ctx.extra.get("ran", []), ctx.extra.get("skipped", [])


def test_up_to_date_stages_are_skipped_and_force_redoes_them(tmp_path, light_stages):
    p = _yaml(tmp_path)
    assert _ran(p) == (["ingest", "preprocess", "pretrain", "extract"], [])
    run_dir = tmp_path / "runs" / "r"
    first = {s: json.loads((run_dir / s / "_stage.json").read_text()) for s in ("ingest", "preprocess")}
    assert all(m["status"] == "done" for m in first.values())
    assert _ran(p) == ([], ["ingest", "preprocess", "pretrain", "extract"])
    assert light_stages == ["pretrain", "extract"]
    assert _ran(p, force=True) == (["ingest", "preprocess", "pretrain", "extract"], [])
    assert json.loads((run_dir / "ingest" / "_stage.json").read_text())["key"] == first["ingest"]["key"]
    # run folder header
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    assert resolved["name"] == "r" and resolved["preprocess"]["roi_size_vox"] == [8, 8, 8]
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"] and "device" in env


@pytest.mark.parametrize(
    "override, expected",
    [
        ("extract.n_jobs=2", ["extract"]),
        ("pretrain.steps=7", ["pretrain", "extract"]),
        ("preprocess.roi_size_vox=[12, 12, 12]", ["preprocess", "pretrain", "extract"]),
        ("data.synth.seed=2", ["ingest", "preprocess", "pretrain", "extract"]),
        ("seed=3", ["ingest", "preprocess", "pretrain", "extract"]),
        ("report.max_rows=10", []),  # report is not in this pipeline's stages
    ],
)
def test_changing_one_section_reruns_that_stage_and_downstream(tmp_path, light_stages, override, expected):
    p = _yaml(tmp_path)
    _ran(p)
    ran, skipped = _ran(p, [override])
    assert ran == expected
    assert skipped == [s for s in ("ingest", "preprocess", "pretrain", "extract") if s not in expected]
    assert _ran(p, [override]) == ([], ["ingest", "preprocess", "pretrain", "extract"])


def test_stage_subset_and_stale_upstream(tmp_path, light_stages):
    p = _yaml(tmp_path)
    with pytest.raises(RadaeError, match=r"upstream stage\(s\) \['ingest'\] have not completed"):
        _ran(p, stages=["preprocess"])
    _ran(p)
    assert _ran(p, stages=["extract"], force=True)[0] == ["extract"]
    # preprocess changed but only extract is asked for: refusing beats mixing old and new inputs
    with pytest.raises(RadaeError, match=r"upstream stage\(s\) \['preprocess'\] .* are out of date .* add preprocess"):
        _ran(p, ["preprocess.roi_size_vox=[12, 12, 12]"], stages=["pretrain"])
    with pytest.raises(RadaeError, match=r"--stages: unknown stage\(s\) \['train'\]"):
        _ran(p, stages=["train"])
    with pytest.raises(RadaeError, match=r"--stages: \['report'\] not in this pipeline's stages"):
        _ran(p, stages=["report"])


def test_failures_csv_per_stage_and_for_the_run(tmp_path, light_stages):
    p = _yaml(tmp_path)
    _ran(p)
    run_dir = tmp_path / "runs" / "r"
    stage_f = pd.read_csv(run_dir / "extract" / "failures.csv")
    assert list(stage_f.columns) == FAILURE_COLUMNS and len(stage_f) == 1
    assert stage_f["stage"].iloc[0] == "extract" and stage_f["message"].iloc[0] == "pretend this lesion failed"
    assert stage_f["file"].iloc[0].endswith("roi.npz")
    run_f = pd.read_csv(run_dir / "failures.csv")
    assert run_f.equals(stage_f)
    assert pd.read_csv(run_dir / "ingest" / "failures.csv").empty
    assert json.loads((run_dir / "extract" / "_stage.json").read_text())["failures"] == 1


def test_a_stage_that_crashes_is_not_marked_done(tmp_path, light_stages, monkeypatch):
    p = _yaml(tmp_path, stages=("ingest", "preprocess", "pretrain"))
    _ran(p)

    def boom(ctx):
        (ctx.stage_dir() / "half.txt").write_text("x")
        raise RadaeError("pretrain: simulated crash")

    monkeypatch.setitem(STAGE_REGISTRY, "pretrain", dataclasses.replace(STAGE_REGISTRY["pretrain"], fn=boom))
    with pytest.raises(RadaeError, match="simulated crash"):
        _ran(p, ["pretrain.steps=9"])
    meta = json.loads((tmp_path / "runs" / "r" / "pretrain" / "_stage.json").read_text())
    assert meta["status"] == "running"
    monkeypatch.undo()
    light = []
    monkeypatch.setitem(STAGE_REGISTRY, "pretrain", dataclasses.replace(STAGE_REGISTRY["pretrain"], fn=lambda ctx: light.append(1)))
    assert _ran(p, ["pretrain.steps=9"])[0] == ["pretrain"] and light == [1]  # redone, though its key is unchanged


def test_lock_refuses_a_concurrent_run_and_is_released_after_errors(tmp_path, light_stages):
    p = _yaml(tmp_path)
    run_dir = tmp_path / "runs" / "r"
    with run_lock(run_dir):
        with pytest.raises(RunLockedError, match=f"run folder {run_dir}: another radae process is using it"):
            _ran(p)
    with pytest.raises(RadaeError):
        _ran(p, stages=["bogus"])
    assert _ran(p)[0]  # the lock was released


def test_second_process_is_refused_by_the_lock(tmp_path):
    p = _yaml(tmp_path, stages=("ingest",))
    run_dir = tmp_path / "runs" / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from radae.util.fsutil import run_lock\n"
         "with run_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(60)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = subprocess.run([sys.executable, "-m", "radae.cli", "run", str(p), "-q"], capture_output=True, text=True,
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert r.returncode == 2
        assert f"radae: error: run folder {run_dir}: another radae process is using it" in r.stderr
        assert "Traceback" not in r.stderr and not (run_dir / "ingest").exists()
    finally:
        holder.kill()
        holder.wait()


def test_temp_files_of_a_killed_run_are_removed(tmp_path, light_stages):
    p = _yaml(tmp_path, stages=("ingest",))
    _ran(p)
    stale = tmp_path / "runs" / "r" / "ingest" / f"{TEMP_PREFIX}abc123"
    stale.mkdir()
    (stale / "cases.parquet").write_bytes(b"half")
    before = (tmp_path / "runs" / "r" / "ingest" / "cases.parquet").read_bytes()
    _ran(p)
    assert not stale.exists() and (tmp_path / "runs" / "r" / "ingest" / "cases.parquet").read_bytes() == before
    assert sorted(f.name for f in (tmp_path / "runs" / "r" / "ingest").iterdir()) == ["_stage.json", "cases.parquet", "failures.csv"]


def test_on_error_is_part_of_every_stage_key_that_meets_broken_cases(tmp_path, light_stages):
    """Preprocess and ingest read on_error: changing it redoes them (it used to be extract.on_error, outside their keys)."""
    p = _yaml(tmp_path)
    assert _ran(p)[0] == ["ingest", "preprocess", "pretrain", "extract"]
    assert _ran(p, ["on_error=raise"]) == (["ingest", "preprocess", "pretrain", "extract"], [])
    assert _ran(p, ["on_error=raise"])[1] == ["ingest", "preprocess", "pretrain", "extract"]


def test_the_old_extract_on_error_key_says_where_it_went(tmp_path):
    from radae.util.errors import ConfigError

    with pytest.raises(ConfigError, match=r"extract.on_error moved to the top-level key on_error"):
        load_pipeline(_yaml(tmp_path), overrides=["extract.on_error=raise"])
