"""The report stage inside `radae run`: rebuilt when anything upstream changes, skipped otherwise."""
from __future__ import annotations

import pytest

import json

from radae.runner import run_pipeline


@pytest.mark.slow  # over 10 s: a subprocess run or a whole tiny pipeline
def test_report_stage_follows_upstream_changes(tiny_config, tmp_path):
    def run(*extra):
        cfg = tiny_config(tmp_path / "runs", "stages=[ingest, preprocess, report]", *extra)
        return run_pipeline(cfg, quiet=True).extra.get("ran", [])

    assert run() == ["ingest", "preprocess", "report"]
    html = tmp_path / "runs" / "demo" / "report" / "report.html"
    assert html.exists()
    assert run() == []  # everything up to date
    assert run("preprocess.patches.per_volume=2") == ["preprocess", "report"]  # upstream changed -> report rebuilt
    assert run("preprocess.patches.per_volume=2", "report.title=Cohort X") == ["report"]
    assert "<title>Cohort X</title>" in html.read_text()
    summary = json.loads((tmp_path / "runs" / "demo" / "report" / "summary.json").read_text())
    assert summary["run"] == "demo" and summary["numbers"]["preprocess"]["ok"] > 0
