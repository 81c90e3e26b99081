"""`radae features` (one lesion / a manifest), `-q` warning lines, and pipelines named from another folder."""
from __future__ import annotations

import io
import logging

import pandas as pd
import pytest
from typer.testing import CliRunner

from radae.cli import app


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
