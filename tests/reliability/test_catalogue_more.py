"""Issue 15 part C: more kinds of bad input (images, masks, MetaImage pairs, manifest files as spreadsheets export them).

Refusals go through ``safe_preprocess_lesion`` (the function preprocess maps over lesions) or ``radae validate``;
the kinds radae reads correctly are compared voxel for voxel with the ROI of an equivalent plain input.
"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from radae.cli import app
from radae.config import load_pipeline
from radae.data.manifest import load_manifest
from radae.preprocess.lesion import safe_preprocess_lesion
from radae.preprocess.store import load_roi
from radae.runner import run_pipeline

from .catalogue import (CORRECT_IMAGE_KINDS, ISSUE15_C_KINDS, MANIFEST_CORRECT_KINDS, MANIFEST_FILE_KINDS,
                        MORE_IMAGE_KINDS, good_case)
from .test_catalogue import CFG, assert_message


def _build(folder, kind):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    row = good_case(folder, kind.name, rng)
    row.update(kind.build(folder, row, rng))
    return row


@pytest.mark.parametrize("kind", MORE_IMAGE_KINDS, ids=lambda k: k.name)
def test_more_image_and_mask_kinds(tmp_path, kind):
    row = _build(tmp_path, kind)
    meta, msg, file = safe_preprocess_lesion((row, CFG, tmp_path / "cache", 0))
    assert meta is None and file == row[kind.file]
    assert_message(msg, kind.name, row[kind.file], kind.problem.format(d=tmp_path), kind.advice)


def test_an_int16_ct_as_mask_is_refused_not_read_as_the_voxels_at_1_hu(tmp_path):
    # before: mask_label 1 picked the 4 voxels whose HU happened to be exactly 1, and the case ran on them
    row = _build(tmp_path, MORE_IMAGE_KINDS[1])
    ct = sitk.GetArrayFromImage(sitk.ReadImage(row["mask"]))
    assert int((ct == 1).sum()) == 4 and np.unique(ct).size == 1327
    meta, msg, _ = safe_preprocess_lesion((row, CFG, tmp_path / "cache", 0))
    assert meta is None and "mask holds 1,327 distinct values" in msg


@pytest.mark.parametrize("name", sorted(CORRECT_IMAGE_KINDS))
def test_more_kinds_read_correctly(tmp_path, name):
    rng = np.random.default_rng(0)
    row = good_case(tmp_path, name, rng)
    changed, reference = CORRECT_IMAGE_KINDS[name](tmp_path, row, rng)
    meta, msg, _ = safe_preprocess_lesion(({**row, **changed}, CFG, tmp_path / "cache", 0))
    ref, ref_msg, _ = safe_preprocess_lesion(({**row, **reference, "case_id": "ref"}, CFG, tmp_path / "cache_ref", 0))
    assert msg is None and ref_msg is None
    assert meta["voxel_count"] == ref["voxel_count"] == 123
    got, want = load_roi(meta["roi_path"]), load_roi(ref["roi_path"])
    assert np.array_equal(got.mask, want.mask) and np.array_equal(got.image, want.image)


def test_more_broken_cases_are_failure_rows_and_the_rest_runs(tmp_path):
    rows = []
    for kind in MORE_IMAGE_KINDS:
        rows.append(_build(tmp_path / kind.name, kind))
    good = [good_case(tmp_path / "good", f"good{i}", np.random.default_rng(i)) for i in range(2)]
    pd.DataFrame(rows + good).to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"name": "more", "runs_dir": str(tmp_path / "runs"), "stages": ["ingest", "preprocess"],
           "data": {"manifest": "manifest.csv"}, "preprocess": CFG.model_dump(mode="json")}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    ctx = run_pipeline(load_pipeline(tmp_path / "p.yaml"), quiet=True)
    assert ctx.extra["ran"] == ["ingest", "preprocess"]
    fails = pd.read_csv(tmp_path / "runs" / "more" / "failures.csv", keep_default_na=False)
    assert sorted(fails["case_id"]) == sorted(k.name for k in MORE_IMAGE_KINDS)
    by_name = {k.name: k for k in MORE_IMAGE_KINDS}
    for f in fails.itertuples():
        kind = by_name[f.case_id]
        assert_message(f.message, f.case_id, f.file, kind.problem.format(d=tmp_path / kind.name), kind.advice)
    rois = pd.read_parquet(tmp_path / "runs" / "more" / "preprocess" / "rois.parquet")
    assert sorted(rois["case_id"]) == ["good0", "good1"] and (rois["voxel_count"] == 123).all()


def _data_files(folder):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for cid in ("A", "B"):
        for f in ("img", "msk"):
            (folder / "data" / f"{cid}_{f}.nii.gz").write_bytes(b"x")


@pytest.mark.parametrize("name, data, suffix, problem, advice", MANIFEST_FILE_KINDS, ids=[k[0] for k in MANIFEST_FILE_KINDS])
def test_manifest_file_kinds_through_validate(tmp_path, name, data, suffix, problem, advice):
    _data_files(tmp_path)
    manifest = tmp_path / f"manifest{suffix}"
    manifest.write_bytes(data)
    doc = {"name": "m", "runs_dir": str(tmp_path / "runs"), "data": {"manifest": manifest.name},
           "benchmark": {"survival": {"time": "os_time", "event": "os_event"}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "p.yaml")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = next((ln for ln in r.output.splitlines() if problem in ln), r.output)
    assert f"manifest {manifest}: " in line and problem in line.split(" -> ", 1)[0], r.output
    assert advice in line.split(" -> ", 1)[1]


@pytest.mark.parametrize("name, data, expected", MANIFEST_CORRECT_KINDS, ids=[k[0] for k in MANIFEST_CORRECT_KINDS])
def test_manifest_kinds_read_correctly(tmp_path, name, data, expected):
    _data_files(tmp_path)
    (tmp_path / "manifest.csv").write_bytes(data)
    df = load_manifest(tmp_path / "manifest.csv", required_columns=("os_time", "os_event"), numeric_columns=("os_time",),
                       binary_columns=("os_event",), nonnegative_columns=("os_time",))
    assert len(df) == 2 and list(df.index) == [0, 1]
    assert df["image"].tolist() == [str(tmp_path / "data" / f"{c}_img.nii.gz") for c in ("A", "B")]
    for col, values in expected.items():
        assert df[col].tolist() == values


def test_blank_rows_keep_the_row_numbers_of_later_problems(tmp_path):
    _data_files(tmp_path)
    text = b"case_id,patient_id,image,mask,modality\n,,,,\nA,PA,data/A_img.nii.gz,data/A_msk.nii.gz,CT\nA,PB,x,y,CT\n"
    (tmp_path / "manifest.csv").write_bytes(text)
    with pytest.raises(Exception) as e:
        load_manifest(tmp_path / "manifest.csv")
    assert "row 4 (case A): duplicate case_id (first seen in row 3)" in str(e.value)


def test_part_c_kinds_are_unique_and_each_has_a_test():
    names = [k.name for k in ISSUE15_C_KINDS]
    assert len(set(names)) == len(names) == 28
    tests = {n for n in globals() if n.startswith("test_")}
    assert {k.test for k in ISSUE15_C_KINDS} <= tests
    counts = pd.Series([k.was for k in ISSUE15_C_KINDS]).value_counts().to_dict()
    assert counts == {"unclear message": 11, "correct from the start": 11, "silently wrong": 5, "valid input refused": 1}
