"""data.validation_manifest: a second cohort's own manifest, read with the same checks, kept out of pretraining."""
import shutil

import pandas as pd
import pytest
from tests.data.two_cohorts import one_manifest_config, two_manifest_config, write_cohort, write_yaml
from typer.testing import CliRunner

from radae.cli import app
from radae.config.data import COHORTS
from radae.data.sources import validated_manifest
from radae.preprocess.items import collect_items, read_rois_index
from radae.runfolder import RunContext
from radae.runner import STAGE_REGISTRY, run_pipeline, stage_key
from radae.util.errors import ManifestError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two") / "cohort"
    return folder, write_cohort(folder)


def _ingested(cfg) -> pd.DataFrame:
    run_pipeline(cfg, stages=["ingest"], quiet=True)
    return pd.read_parquet(cfg.run_dir / "ingest" / "cases.parquet").sort_values("case_id").reset_index(drop=True)


def test_two_manifests_ingest_as_the_one_with_a_cohort_column(cohort, tmp_path):
    folder, m = cohort
    two, one = _ingested(two_manifest_config(folder, tmp_path)), _ingested(one_manifest_config(folder, tmp_path))
    assert two["case_id"].tolist() == one["case_id"].tolist() == sorted(m["case_id"])
    assert two["cohort"].tolist() == one["cohort"].map({"A": "development", "B": "validation"}).tolist()
    assert two["is_evaluation"].tolist() == one["is_evaluation"].tolist() == (one["cohort"] == "B").tolist()
    same = [c for c in one.columns if c != "cohort"]
    pd.testing.assert_frame_equal(two[same], one[same])  # every other column, hashes included
    cfg = two_manifest_config(folder, tmp_path)
    assert cfg.benchmark.external.model_dump() == {"column": "cohort", "develop": ("development",), "validate": ("validation",)}


def test_a_validation_patient_is_never_a_pretraining_item(cohort, tmp_path):
    folder, m = cohort
    cfg = two_manifest_config(folder, tmp_path)
    run_pipeline(cfg, stages=["ingest", "preprocess"], quiet=True)
    rois = read_rois_index(cfg.run_dir / "preprocess" / "rois.parquet")
    split = collect_items(rois, cfg, (16, 16, 16), lambda c, msg, f: None)
    seen = {i.patient_id for i in split.train + split.val}
    b = set(m.loc[m["cohort"] == "B", "patient_id"])
    assert seen == set(m.loc[m["cohort"] == "A", "patient_id"]) and not seen & b
    assert split.info["excluded_evaluation_patients"] == len(b) == 20
    assert split.info["excluded_evaluation_lesions"] == int((m["cohort"] == "B").sum())


def test_a_case_or_patient_in_both_manifests_is_refused(cohort, tmp_path):
    folder, m = cohort
    dev = pd.read_csv(folder / "development.csv")
    work = tmp_path / "c"
    shutil.copytree(folder, work)
    val = pd.read_csv(work / "validation.csv")
    pd.concat([val, dev.iloc[[0]]]).to_csv(work / "validation.csv", index=False)
    with pytest.raises(ManifestError) as e:
        validated_manifest(two_manifest_config(work, tmp_path))
    assert str(e.value) == (f"case_id {dev['case_id'].iloc[0]!r} is in both {work / 'development.csv'} and {work / 'validation.csv'} "
                            "-> a patient belongs to one cohort; remove it from one manifest")
    pd.concat([val, dev.iloc[[0, 1]].assign(case_id=["X1", "X2"])]).to_csv(work / "validation.csv", index=False)
    r = CliRunner().invoke(app, ["validate", str(write_yaml(work, "two", "manifest: development.csv, validation_manifest: "
                                                             "validation.csv", tmp_path))])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert f"patient_id {dev['patient_id'].iloc[0]!r} is in both {work / 'development.csv'} and" in r.output


def test_validate_checks_the_second_manifest_too(cohort, tmp_path):
    folder, m = cohort
    work = tmp_path / "c"
    shutil.copytree(folder, work)
    p = write_yaml(work, "two", "manifest: development.csv, validation_manifest: validation.csv", tmp_path)
    r = CliRunner().invoke(app, ["validate", str(p)])
    assert r.exit_code == 0 and f"{len(m)} lesions, 40 patients (20 development, 20 validation)" in r.output, r.output
    val = pd.read_csv(work / "validation.csv")
    val.assign(image=["images/gone.nii.gz"] + val["image"].tolist()[1:]).to_csv(work / "validation.csv", index=False)
    r = CliRunner().invoke(app, ["validate", str(p)])
    assert r.exit_code == 2 and r.output.strip() == (
        f"radae: error: manifest {work / 'validation.csv'}: row 2 (case {val['case_id'].iloc[0]}): image file not found: "
        f"{work / 'images' / 'gone.nii.gz'} -> fix the path (relative paths start at the manifest's folder)"), r.output
    val.to_csv(work / "validation.csv", index=False)
    one = write_yaml(work, "clash", "manifest: one.csv, validation_manifest: validation.csv", tmp_path)
    r = CliRunner().invoke(app, ["validate", str(one)])
    assert r.exit_code != 0 and f"manifest {work / 'one.csv'}: already has a column 'cohort'" in r.output, r.output


def test_moving_the_cohort_folder_keeps_the_ingest_key(cohort, tmp_path):
    folder, _ = cohort
    keys = []
    for where in ("a", "b"):
        work = tmp_path / where / "cohort"
        shutil.copytree(folder, work)
        cfg = two_manifest_config(work, tmp_path / "runs")
        keys.append(stage_key(RunContext(cfg, cfg.run_dir), STAGE_REGISTRY["ingest"], {}))
        assert cfg.data.validation_manifest == work / "validation.csv"
    assert keys[0] == keys[1]
    val = pd.read_csv(work / "validation.csv")
    val.iloc[1:].to_csv(work / "validation.csv", index=False)  # a real change to the second manifest counts
    cfg = two_manifest_config(work, tmp_path / "runs")
    assert stage_key(RunContext(cfg, cfg.run_dir), STAGE_REGISTRY["ingest"], {}) != keys[0]
    assert COHORTS == ("development", "validation")
