"""The radae command line: exit codes, one-line errors without tracebacks, what it prints."""
import json
import re

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from radae.cli import app


@pytest.fixture
def cli():
    return CliRunner()


def _yaml(tmp_path, **extra):
    doc = {"name": "c", "runs_dir": str(tmp_path / "runs"), "stages": ["ingest", "preprocess"],
           "data": {"synth": {"cases": 4, "size_vox": 24}},
           "preprocess": {"spacing_mm": [2, 2, 2], "roi_size_vox": [8, 8, 8], "patches": {"per_volume": 0}}, **extra}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_validate_ok_and_errors(cli, tmp_path):
    p = _yaml(tmp_path)
    r = cli.invoke(app, ["validate", str(p)])
    assert r.exit_code == 0, r.output
    assert re.search(rf"ok: {re.escape(str(p))}: \d+ lesions, 6 patients, modalities \['CT'\]", r.output), r.output
    r = cli.invoke(app, ["validate", str(p), "--set", "preprocess.spacing_mm=[1, -1, 1]"])
    assert r.exit_code == 2
    assert f"radae: error: {p}: preprocess.spacing_mm: each spacing must be within [0.05, 20] mm" in r.output
    assert "Traceback" not in r.output
    r = cli.invoke(app, ["validate", str(p), "--set", "preprocess.spacng_mm=1"])
    assert r.exit_code == 2 and "preprocess.spacng_mm: unknown key" in r.output


def test_validate_reports_manifest_problems(cli, tmp_path):
    (tmp_path / "m.csv").write_text("case_id,patient_id,image,mask,modality\nA,P,a.nii,a_m.nii,CT\nA,P,b.nii,b_m.nii,CT\n")
    p = _yaml(tmp_path, data={"manifest": "m.csv"})
    r = cli.invoke(app, ["validate", str(p)])
    assert r.exit_code == 2
    assert "row 2 (case A): image file not found" in r.output and "row 3 (case A): duplicate case_id" in r.output


def test_run_prints_where_outputs_are_and_skips_when_up_to_date(cli, tmp_path):
    p = _yaml(tmp_path)
    r = cli.invoke(app, ["run", str(p), "--quiet"])
    assert r.exit_code == 0, r.output
    run_dir = (tmp_path / "runs" / "c").resolve()
    assert f"run folder: {run_dir}" in r.output and "stages run: ingest, preprocess; up to date: none" in r.output
    r = cli.invoke(app, ["run", str(p), "--quiet"])
    assert "stages run: none; up to date: ingest, preprocess" in r.output
    r = cli.invoke(app, ["run", str(p), "--quiet", "--force", "--stages", "preprocess"])
    assert "stages run: preprocess; up to date: none" in r.output
    r = cli.invoke(app, ["run", str(p), "--quiet", "--stages", "ingest,bogus"])
    assert r.exit_code == 2 and "unknown stage(s) ['bogus']" in r.output


def test_run_reports_the_failure_count(cli, tmp_path):
    p = _yaml(tmp_path)
    assert cli.invoke(app, ["run", str(p), "-q", "--stages", "ingest"]).exit_code == 0
    cases = pd.read_parquet(tmp_path / "runs" / "c" / "ingest" / "cases.parquet")
    open(cases["mask"].iloc[0], "wb").write(b"not an image")  # broken after ingest: a per-case failure
    r = cli.invoke(app, ["run", str(p), "-q"])
    assert r.exit_code == 0, r.output
    n_bad = int((cases["mask"] == cases["mask"].iloc[0]).sum())
    assert f"failures: {n_bad} (see " in r.output


def test_synth_and_info(cli, tmp_path):
    r = cli.invoke(app, ["synth", "--out", str(tmp_path / "syn"), "--cases", "4", "--seed", "3", "--size", "24", "--unlabeled", "0"])
    assert r.exit_code == 0 and "wrote" in r.output
    m = pd.read_csv(tmp_path / "syn" / "manifest.csv")
    assert m["patient_id"].nunique() == 4 and (tmp_path / "syn" / "truth.csv").exists()
    r = cli.invoke(app, ["info"])
    info = json.loads(r.output)
    assert r.exit_code == 0 and info["packages"]["SimpleITK"] and "data_root" in info and "torch_threads" in info["device"]


def test_every_former_python_dash_m_entry_point_is_a_radae_command(tmp_path):
    from typer.testing import CliRunner

    from radae.cli import app
    from radae.config.doc import markdown

    runner = CliRunner()
    ref = runner.invoke(app, ["reference"])
    assert ref.exit_code == 0 and ref.output.strip() == markdown().strip()
    bad = runner.invoke(app, ["ibsi", "--out", str(tmp_path / "x.csv"), "--datasets", "phantom,Z"])
    assert bad.exit_code == 2 and "unknown ['Z']" in bad.output and not (tmp_path / "x.csv").exists()
    nodata = runner.invoke(app, ["ibsi", "--out", str(tmp_path / "x.csv"), "--data-root", str(tmp_path)])
    assert nodata.exit_code == 2 and "no IBSI data under" in nodata.output
    for cmd in (["report", "-h"], ["ibsi", "-h"], ["manifest", "examples", "-h"]):
        assert runner.invoke(app, cmd).exit_code == 0, cmd
