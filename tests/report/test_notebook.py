"""The statistician's notebook runs top to bottom against a finished (tiny) run and reproduces a report number."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "statistician.ipynb"


@pytest.fixture(autouse=True)
def _needs_finished_runs():
    """The notebook reads feature tables and benchmark outputs: it runs as soon as those stages exist."""
    from radae.runner import STAGE_REGISTRY
    absent = [s for s in ("pretrain", "extract", "benchmark", "report") if s not in STAGE_REGISTRY]
    if absent:
        pytest.skip(f"stage(s) {absent} not implemented in this checkout yet; the notebook needs a finished run")


def _execute(run_dir: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("RADAE_RUN_DIR", str(run_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def _stdout(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_notebook_reproduces_the_report(tiny_run, monkeypatch):
    nb = _execute(tiny_run, monkeypatch)
    out = _stdout(nb)
    assert "AUC per fold" in out
    summary = json.loads((tiny_run / "report" / "summary.json").read_text())["numbers"]
    assert f"mean AUC = {summary['classification']['volume']['logistic_l2']['auc']['mean']}" in out


def test_notebook_fails_when_the_report_disagrees(tiny_run, tmp_path, monkeypatch):
    """The reproduction is a real check: a report number that the tables do not support stops the notebook."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("cache"))
    path = copy / "report" / "summary.json"
    doc = json.loads(path.read_text())
    doc["numbers"]["classification"]["volume"]["logistic_l2"]["auc"]["mean"] += 0.05
    path.write_text(json.dumps(doc))
    with pytest.raises(CellExecutionError, match="AssertionError"):
        _execute(copy, monkeypatch)
