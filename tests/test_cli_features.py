"""`radae features` (one lesion / a manifest), `-q` warning lines, and pipelines named from another folder."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from radae.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radae.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("syn")
    generate_cohort(out, cases=4, seed=0, size_vox=24, unlabeled=0)
    return out


def test_features_one_lesion_prints_one_row_equal_to_pyradiomics(cohort):
    from radiomics import featureextractor

    from radae.features.standalone import _spec

    m = pd.read_csv(cohort / "manifest.csv")
    img, msk = str(cohort / m["image"][0]), str(cohort / m["mask"][0])
    r = CliRunner().invoke(app, ["features", img, msk, "--label", "1"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln]
    assert len(lines) == 2 and lines[0].startswith("image,mask,original_shape_")
    row = dict(zip(lines[0].split(","), lines[1].split(",")))
    ref = featureextractor.RadiomicsFeatureExtractor(_spec(None, "CT", None).params).execute(img, msk, label=1)
    feats = {k: float(v) for k, v in ref.items() if k.startswith("original_")}
    assert len(feats) == 107 and set(feats) == set(row) - {"image", "mask"}
    assert all(float(row[k]) == pytest.approx(v, rel=1e-12, abs=0) for k, v in feats.items())


def test_features_manifest_writes_the_extract_stage_outputs(cohort, tmp_path):
    out = tmp_path / "feats.csv"
    r = CliRunner().invoke(app, ["features", "--manifest", str(cohort / "manifest.csv"), "--jobs", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    n = len(pd.read_csv(cohort / "manifest.csv"))
    assert len(table) == n and list(table.columns[:2]) == ["case_id", "patient_id"]
    ext = tmp_path / "feats_radae" / "extract"
    for name in ("radiomics.parquet", "lesion_provenance.parquet", "data_dictionary.csv", "provenance.json", "failures.csv",
                 "summary.json"):
        assert (ext / name).is_file(), name
    assert (tmp_path / "feats_radae" / "failures.csv").is_file()
    # same values as the pipeline's table twin; a second call reuses the finished lesions
    assert pd.read_parquet(ext / "radiomics.parquet").shape == table.shape
    r = CliRunner().invoke(app, ["features", "--manifest", str(cohort / "manifest.csv"), "--out", str(out), "-q"])
    assert r.exit_code == 0 and pd.read_csv(out).equals(table)


def test_features_bad_input_is_one_line(cohort, tmp_path):
    r = CliRunner().invoke(app, ["features", str(tmp_path / "nope.nii.gz"), str(tmp_path / "m.nii.gz")])
    assert r.exit_code == 2 and "IMAGE" in r.output and "file not found" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["features", "--manifest", str(cohort / "manifest.csv")])
    assert r.exit_code == 2 and "--out" in r.output


def test_failure_warning_has_one_case_prefix():
    from radae.util.errors import case_message
    from radae.runfolder import RunContext

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    lg = logging.getLogger("radae.runner")
    lg.addHandler(handler)
    try:
        ctx = RunContext(cfg=None, run_dir=None, stage_name="extract")
        ctx.fail("A1", case_message("A1", "m.nii", "empty mask"))
        ctx.fail("B2", "no mask given")
    finally:
        lg.removeHandler(handler)
    text = buf.getvalue()
    assert "extract: case A1: file m.nii: empty mask" in text and "case A1: case A1" not in text
    assert "extract: case B2: no mask given" in text


def test_shipped_pipeline_found_from_another_folder(tmp_path, monkeypatch):
    from radae.config import load_pipeline

    monkeypatch.chdir(tmp_path)
    for name in ("pipelines/demo.yaml", "demo"):
        cfg = load_pipeline(name)
        assert cfg.name == "demo" and cfg.source.parent.name == "pipelines"
    from radae.util.errors import ConfigError

    with pytest.raises(ConfigError, match="looked in"):
        load_pipeline("pipelines/nope.yaml")


def _features_cli(argv: list[str], env: dict | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """``radae features ...`` as a fresh process (start-up as a user meets it); ``prelude`` runs first, in-process."""
    code = f"import runpy, sys\n{prelude}\nsys.argv = ['radae', *{argv!r}]\nrunpy.run_module('radae.cli', run_name='__main__')"
    full = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)


def test_features_manifest_imports_no_torch_sklearn_or_scipy_stats(cohort, tmp_path):
    # the radiomics-only path's start-up is part of the comparison with PyRadiomics (bench_vs_pyradiomics.py)
    prelude = ("import atexit\natexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'sklearn', 'scipy.stats', "
               "'matplotlib', 'dask', 'distributed') if m in sys.modules)))")
    r = _features_cli(["features", "--manifest", str(cohort / "manifest.csv"), "--jobs", "2", "--out",
                       str(tmp_path / "f.csv"), "-q"], prelude=prelude)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "HEAVY []" in r.stdout, r.stdout


def _without_timing(path: Path) -> bytes:
    """A file's bytes; for the JSON sidecars without their timing fields (created_utc, seconds, lesions_per_s)."""
    if path.name not in ("provenance.json", "summary.json"):
        return path.read_bytes()

    def drop(v):
        if isinstance(v, dict):
            return {k: drop(x) for k, x in v.items() if k not in ("created_utc", "seconds", "lesions_per_s")}
        return v

    return json.dumps(drop(json.loads(path.read_text()))).encode()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_features_manifest_prefetched_lesions_give_the_same_bytes(cohort, tmp_path, jobs):
    # prefetch (workers forked before pandas is imported) vs none (spawn start method: no prefetch, the usual path);
    # --jobs 1 never prefetches (one job = one busy process)
    argv = ["features", "--manifest", str(cohort / "manifest.csv"), "--jobs", jobs, "--out", str(tmp_path / "f.csv"), "-v"]
    runs = {}
    for name, env in (("prefetch", {}), ("plain", {"RADAE_START_METHOD": "spawn"})):
        r = _features_cli(argv, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        n = len(pd.read_csv(cohort / "manifest.csv"))
        assert (f"extract: {n} of {n} lesions from the prefetch workers" in r.stderr) == (name == "prefetch" and jobs != "1")
        runs[name] = tmp_path / name
        (tmp_path / "f_radae").rename(runs[name])
        (tmp_path / "f.csv").rename(runs[name] / "f.csv")
    ext = ("radiomics.csv", "radiomics.parquet", "lesion_provenance.csv", "lesion_provenance.parquet", "data_dictionary.csv",
           "failures.csv", "outcomes.csv", "provenance.json", "summary.json")
    for rel in ["f.csv", "failures.csv", "ingest/cases.parquet", *(f"extract/{e}" for e in ext)]:
        assert _without_timing(runs["prefetch"] / rel) == _without_timing(runs["plain"] / rel), rel


def test_features_manifest_rejected_params_are_reported_once(cohort, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("imageType:\n  Original: {}\nsetting:\n  binWidth: wide\n")
    r = _features_cli(["features", "--manifest", str(cohort / "manifest.csv"), "-p", str(bad), "--out", str(tmp_path / "f.csv"), "-q"])
    assert r.returncode == 2 and f"radae: error: file {bad}: PyRadiomics rejected the parameters" in r.stderr
    assert r.stderr.count("validation.invalid") == 1 and "Traceback" not in r.stderr  # not again for the prefetch
