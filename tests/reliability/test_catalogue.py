"""Issue 8's bad-input catalogue: each kind of broken input gives one line naming case, file, problem and advice,
and a cohort run with broken cases finishes with failures.csv rows and complete outputs for the rest.

Per-lesion kinds (images, masks, seeds, DICOM series, RTSTRUCT) go through ``safe_preprocess_lesion``, the function
the preprocess stage maps over lesions; manifest and config kinds through ``radae validate``; the kinds that belong to
later stages (checkpoint, feature tables, outcomes) through the runner on a tiny complete run.
"""
from __future__ import annotations

import contextlib
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from radae.cli import app
from radae.config import PreprocessConfig, load_pipeline
from radae.util.errors import BenchmarkError, TrainError
from radae.preprocess.lesion import preprocess_lesion, safe_preprocess_lesion
from radae.preprocess.store import load_roi
from radae.runner import run_pipeline

from .catalogue import IMAGE_KINDS, Kind, good_arrays, good_case, write_image

CFG = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), roi_size_vox=(8, 8, 8), patches={"per_volume": 1}, max_voxels=10_000_000)


def assert_message(msg: str, case: str, file: str, problem: str, advice: str) -> None:
    """The canonical line: ``case C: file F: problem -> advice``."""
    assert "\n" not in msg, msg
    assert msg.startswith(f"case {case}: file {file}: "), msg
    what, _, todo = msg.partition(" -> ")
    assert problem in what, msg
    assert advice in todo, msg


def _run_kind(folder, kind: Kind, factory=None) -> tuple[dict, tuple]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    row = good_case(folder, kind.name, rng)
    row.update(kind.build(folder, row, rng) if factory is None else kind.build(folder, row, rng, factory))
    return row, safe_preprocess_lesion((row, CFG, folder / "cache", 0))


def test_the_good_case_passes(tmp_path):
    row = good_case(tmp_path, "good", np.random.default_rng(0))
    meta, msg, _ = safe_preprocess_lesion((row, CFG, tmp_path / "cache", 0))
    assert msg is None and np.all(np.isfinite(load_roi(meta["roi_path"]).image))


@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=lambda k: k.name)
def test_image_mask_and_seed_kinds(tmp_path, kind):
    row, (meta, msg, file) = _run_kind(tmp_path, kind)
    assert meta is None
    assert file == row[kind.file]  # failures.csv names the broken file
    assert_message(msg, kind.name, row[kind.file], kind.problem, kind.advice)


# ----------------------------------------------------------------------------- DICOM series and RTSTRUCT
def _series(folder, factory, **kw):
    arr = np.random.default_rng(1).integers(-200, 200, (6, 16, 16)).astype(np.int16)
    arr[2:5, 6:10, 6:10] += 300
    return factory.write_ct_series(folder, arr, **kw)


def _dicom_image(build):
    def wrapped(d, row, rng, factory):
        return build(d, factory)
    return wrapped


def _several_series(d, f):
    _series(d / "s", f)
    _series(d / "s2", f, description="second reconstruction")
    f.copy_slices(sorted((d / "s2").glob("*.dcm")), d / "s", series_uid="1.2.826.0.1.3680043.8.498.77", new_sop_uids=True)
    return {"image": str(d / "s")}


def _uid_absent(d, f):
    _series(d / "s", f)
    return {"image": str(d / "s"), "series_uid": "1.2.826.0.1.999"}


def _missing_slice(d, f):
    _series(d / "s", f, slice_gaps_mm=[2.5, 2.5, 5.0, 2.5, 2.5])
    return {"image": str(d / "s")}


def _uneven(d, f):
    _series(d / "s", f, slice_gaps_mm=[2.5, 2.5, 3.1, 2.5, 2.5])
    return {"image": str(d / "s")}


def _tilted(d, f):
    _series(d / "s", f, tilt_shift_mm=(0.0, 0.6, 0.0))
    return {"image": str(d / "s")}


def _rtstruct(d, f, **kw):
    slices = _series(d / "s", f)
    square = [(5.0, 5.0), (10.0, 5.0), (10.0, 10.0), (5.0, 10.0)]
    f.write_rtstruct(d / "rs.dcm", slices, {"GTV": [(2, square), (3, square)]}, **kw)
    return str(d / "s"), str(d / "rs.dcm")


def _roi_absent(d, f):
    image, mask = _rtstruct(d, f)
    return {"image": image, "mask": mask, "mask_label": "Liver"}


def _other_series(d, f):
    image, mask = _rtstruct(d, f, referenced_series_uid="1.2.826.0.1.3680043.8.498.42")
    return {"image": image, "mask": mask, "mask_label": "GTV"}


def _ct_slice_as_mask(d, f):
    _series(d / "s", f)
    return {"mask": str(sorted((d / "s").glob("*.dcm"))[0]), "mask_label": "1"}


def _rtstruct_on_nifti(d, f):
    _, mask = _rtstruct(d, f)
    return {"mask": mask, "mask_label": "GTV"}


DICOM_KINDS = [
    Kind("dicom_several_series", _dicom_image(_several_series), "image", "2 image series in one folder", "set series_uid"),
    Kind("dicom_series_uid_absent", _dicom_image(_uid_absent), "image", "series_uid 1.2.826.0.1.999 not in this folder",
         "fix series_uid"),
    Kind("dicom_missing_slice", _dicom_image(_missing_slice), "image", "1 slice(s) missing", "re-export the complete series"),
    Kind("dicom_uneven_spacing", _dicom_image(_uneven), "image", "non-uniform slice spacing", "resample to a regular grid"),
    Kind("dicom_gantry_tilt", _dicom_image(_tilted), "image", "(gantry tilt)", "de-tilt/resample it first"),
    Kind("rtstruct_roi_absent", _dicom_image(_roi_absent), "mask", "ROI 'Liver' not in RTSTRUCT (ROIs: 'GTV')", "fix mask_label"),
    Kind("rtstruct_other_series", _dicom_image(_other_series), "mask", "RTSTRUCT refers to series 1.2.826.0.1.3680043.8.498.42",
         "give the image series the structures were drawn on"),
    Kind("ct_slice_as_mask", _dicom_image(_ct_slice_as_mask), "mask", "DICOM mask has modality 'CT'",
         "give an RTSTRUCT, SEG or label image"),
    Kind("rtstruct_on_nifti_image", _dicom_image(_rtstruct_on_nifti), "mask", "RTSTRUCT mask needs a DICOM series folder",
         "point the manifest's image at the DICOM series"),
]


@pytest.mark.parametrize("kind", DICOM_KINDS, ids=lambda k: k.name)
def test_dicom_kinds(tmp_path, kind, dicom_factory):
    row, (meta, msg, file) = _run_kind(tmp_path, kind, dicom_factory)
    assert meta is None and file == row[kind.file]
    assert_message(msg, kind.name, row[kind.file], kind.problem, kind.advice)


def test_a_valid_dicom_series_with_rtstruct_passes(tmp_path, dicom_factory):
    image, mask = _rtstruct(tmp_path, dicom_factory)
    row = {**good_case(tmp_path, "dcm_ok", np.random.default_rng(0)), "image": image, "mask": mask, "mask_label": "GTV"}
    meta, msg, _ = safe_preprocess_lesion((row, CFG, tmp_path / "cache", 0))
    assert msg is None and meta["voxel_count"] > 0


# ----------------------------------------------------------------------------- accepted with a warning
def test_one_voxel_lesion_that_survives_is_processed_with_a_warning(tmp_path, caplog):
    row = good_case(tmp_path, "tiny_lesion", np.random.default_rng(0))
    m = np.zeros((16, 16, 16), np.uint8)
    m[8, 8, 8] = 1
    row["mask"] = write_image(m, tmp_path / "one.nii.gz")
    with caplog.at_level(logging.WARNING):
        meta = preprocess_lesion(row, PreprocessConfig(spacing_mm=(1, 1, 1), roi_size_vox=(8, 8, 8)), tmp_path / "c", 0)
    assert meta["voxel_count"] == 1 and load_roi(meta["roi_path"]).mask.sum() == 1
    msg = next(r.getMessage() for r in caplog.records if "only 1 voxel" in r.getMessage())
    assert_message(msg, "tiny_lesion", row["mask"], "lesion has only 1 voxel(s)", "features of so few voxels are unreliable")


def test_lesion_touching_the_border_is_processed_with_a_warning(tmp_path, caplog):
    row = good_case(tmp_path, "edge", np.random.default_rng(0))
    img, _ = good_arrays(np.random.default_rng(0))
    m = np.zeros((16, 16, 16), np.uint8)
    m[0:3, 5:9, 12:16] = 1
    img[m > 0] += 100
    row["image"], row["mask"] = write_image(img, tmp_path / "e.nii.gz"), write_image(m, tmp_path / "e_m.nii.gz")
    with caplog.at_level(logging.WARNING):
        meta, msg, _ = safe_preprocess_lesion((row, CFG, tmp_path / "cache", 0))
    assert msg is None and meta["touches_border"]
    warning = next(r.getMessage() for r in caplog.records if "border" in r.getMessage())
    assert_message(warning, "edge", row["mask"], "lesion touches the image border", "check the field of view")


# ----------------------------------------------------------------------------- a cohort with broken cases
def test_cohort_run_records_every_broken_case_and_finishes_the_rest(tmp_path, dicom_factory):
    rows, expected = [], {}
    kinds = [k for k in IMAGE_KINDS if k.name != "image_deleted_after_ingest"] + DICOM_KINDS
    for kind in kinds:
        row, _ = _run_kind(tmp_path / kind.name, kind, dicom_factory if kind in DICOM_KINDS else None)
        shutil.rmtree(tmp_path / kind.name / "cache", ignore_errors=True)
        rows.append(row)
        expected[kind.name] = kind
    good = [good_case(tmp_path / "good", f"good{i}", np.random.default_rng(i)) for i in range(3)]
    pd.DataFrame(rows + good).to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"name": "cohort", "runs_dir": str(tmp_path / "runs"), "stages": ["ingest", "preprocess"],
           "data": {"manifest": "manifest.csv"}, "preprocess": {**CFG.model_dump(mode="json"), "n_jobs": 2}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    ctx = run_pipeline(load_pipeline(tmp_path / "p.yaml"), quiet=True)

    assert ctx.extra["ran"] == ["ingest", "preprocess"]
    fails = pd.read_csv(tmp_path / "runs" / "cohort" / "failures.csv", keep_default_na=False)
    assert sorted(fails["case_id"]) == sorted(expected) and (fails["stage"] == "preprocess").all()
    for f in fails.itertuples():
        kind = expected[f.case_id]
        assert_message(f.message, f.case_id, f.file, kind.problem, kind.advice)
    rois = pd.read_parquet(tmp_path / "runs" / "cohort" / "preprocess" / "rois.parquet")
    assert sorted(rois["case_id"]) == ["good0", "good1", "good2"]
    for p in rois["roi_path"]:
        roi = load_roi(p)
        assert roi.image.shape == (8, 8, 8) and np.all(np.isfinite(roi.image)) and roi.mask.any()


# ----------------------------------------------------------------------------- manifest and config kinds
def _drop_column(rows, col):
    for r in rows:
        r.pop(col)


MANIFEST_KINDS = [  # (name, edit of the second row or of all rows, problem, advice)
    ("duplicate_case_id", lambda r: r.update(case_id="A"), "row 3 (case A): duplicate case_id (first seen in row 2)",
     "give each lesion its own case_id"),
    ("missing_column", lambda rows: _drop_column(rows, "modality"), "missing column(s) ['modality']", "add the column(s)"),
    ("non_numeric_outcome", lambda r: r.update(os_time="n/a"), "row 3 (case B): os_time = 'n/a' is not a number",
     "use a number, or leave the cell empty"),
    ("negative_survival_time", lambda r: r.update(os_time=-3), "row 3 (case B): os_time = -3.0 must not be negative",
     "check the value"),
    ("event_not_0_1", lambda r: r.update(os_event=2), "row 3 (case B): os_event = 2.0 must be 0 or 1", "code it as 1"),
    ("conflicting_outcomes", lambda r: r.update(patient_id="PA", os_event=1), "rows [2, 3] (patient PA): conflicting os_event",
     "give all its lesions the same value"),
    ("path_escapes_root", lambda r: r.update(image="../outside.nii.gz"), "(case B): image", "move the file under data.root"),
    ("partial_seed", lambda r: r.update(mask=None, seed_x=1.0), "row 3 (case B): seed point incomplete", "fill in the missing"),
    ("image_file_missing", lambda r: r.update(image="data/gone.nii.gz"), "row 3 (case B): image file not found",
     "fix the path"),
    ("image_is_a_device", lambda r: r.update(image="/dev/null"), "row 3 (case B): image /dev/null is not a regular file",
     "point it at an image file"),
]


@pytest.mark.parametrize("name, edit, problem, advice", MANIFEST_KINDS, ids=[k[0] for k in MANIFEST_KINDS])
def test_manifest_kinds_through_validate(tmp_path, name, edit, problem, advice):
    (tmp_path / "data").mkdir()
    (tmp_path / "outside.nii.gz").write_bytes(b"x")
    rows = []
    for cid, pid in (("A", "PA"), ("B", "PB")):
        for f in ("img", "msk"):
            (tmp_path / "data" / f"{cid}_{f}.nii.gz").write_bytes(b"x")
        rows.append({"case_id": cid, "patient_id": pid, "image": f"data/{cid}_img.nii.gz", "mask": f"data/{cid}_msk.nii.gz",
                     "mask_label": 1, "modality": "CT", "os_time": 10.0, "os_event": 0})
    edit(rows) if name == "missing_column" else edit(rows[1])
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"name": "m", "runs_dir": str(tmp_path / "runs"),
           "data": {"manifest": "manifest.csv", "root": "data" if name == "path_escapes_root" else None},
           "benchmark": {"survival": {"time": "os_time", "event": "os_event"}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "p.yaml")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = next((ln for ln in r.output.splitlines() if problem in ln), r.output)
    assert f"manifest {tmp_path / 'manifest.csv'}" in line and " -> " in line and advice in line.split(" -> ", 1)[1]


CONFIG_KINDS = [
    ("unknown_key", "preprocess.spacing=[1, 1, 1]", "preprocess.spacing: unknown key (check spelling"),
    ("wrong_type", "preprocess.roi_size_vox=big", "preprocess.roi_size_vox: Input should be a valid tuple (got 'big')"),
    ("impossible_value", "preprocess.spacing_mm=[1, 1, -2]", "preprocess.spacing_mm: each spacing must be within [0.05, 20] mm"),
]


@pytest.mark.parametrize("name, override, expected", CONFIG_KINDS, ids=[k[0] for k in CONFIG_KINDS])
def test_config_kinds_through_validate(tmp_path, name, override, expected):
    (tmp_path / "p.yaml").write_text("name: c\ndata: {synth: {cases: 4}}\n")
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "p.yaml"), "--set", override])
    assert r.exit_code == 2
    assert r.output.startswith(f"radae: error: {tmp_path / 'p.yaml'}: {expected}"), r.output


# ----------------------------------------------------------------------------- kinds of the later stages
@contextlib.contextmanager
def edited_run(tiny_full_run, *names):
    """The shared tiny run, with the listed run-folder files (and every _stage.json) restored afterwards."""
    run_dir = tiny_full_run.parent / "runs" / "tiny"
    keep = [run_dir / n for n in names] + sorted(run_dir.glob("*/_stage.json"))
    saved = {p: p.read_bytes() for p in keep}
    try:
        yield run_dir
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


def test_checkpoint_from_another_model_config_is_refused(tiny_full_run):
    with edited_run(tiny_full_run):
        with pytest.raises(TrainError) as e:
            run_pipeline(load_pipeline(tiny_full_run, overrides=["pretrain.model.latent_dim=12"]), stages=["pretrain"],
                         resume=True)
    msg = str(e.value)
    assert "last.pt" in msg and "another model/training config" in msg and " -> " in msg and "\n" not in msg


def test_feature_table_keys_that_do_not_match_the_cases_are_refused(tiny_full_run):
    with edited_run(tiny_full_run, "extract/latent.parquet") as run_dir:
        df = pd.read_parquet(run_dir / "extract" / "latent.parquet")
        df.loc[0, "case_id"] = "NOT_A_CASE"
        df.to_parquet(run_dir / "extract" / "latent.parquet", index=False)
        with pytest.raises(BenchmarkError) as e:
            run_pipeline(load_pipeline(tiny_full_run), stages=["benchmark"], force=True)
    assert "NOT_A_CASE" in str(e.value) and "not in ingest/cases.parquet" in str(e.value) and "\n" not in str(e.value)


def _benchmark_with_outcomes(tiny_full_run, edit, overrides=(), advice=True):
    with edited_run(tiny_full_run, "ingest/cases.parquet") as run_dir:
        cases = pd.read_parquet(run_dir / "ingest" / "cases.parquet")
        edit(cases).to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
        with pytest.raises(BenchmarkError) as e:
            run_pipeline(load_pipeline(tiny_full_run, overrides=list(overrides)), stages=["benchmark"], force=True)
    assert "\n" not in str(e.value) and (" -> " in str(e.value) or not advice)
    return str(e.value)


def test_outcomes_with_a_single_class_are_refused(tiny_full_run):
    # the benchmark's message names the column and the problem but gives no advice yet (reported to its owner)
    msg = _benchmark_with_outcomes(tiny_full_run, lambda c: c.assign(label=np.where(c["label"].notna(), 1.0, np.nan)),
                                   advice=False)
    assert "single class" in msg and "label" in msg


def test_too_few_events_for_survival_cv_are_refused(tiny_full_run):
    one_event = lambda c: c.assign(os_event=np.where(c["patient_id"] == "SYN0000", 1.0,  # noqa: E731
                                                     np.where(c["os_event"].notna(), 0.0, np.nan)))
    msg = _benchmark_with_outcomes(tiny_full_run, one_event, ["benchmark.classification=null",
                                                              "benchmark.survival={time: os_time, event: os_event}"])
    assert "event" in msg


def test_every_cohort_output_is_finite(tiny_full_run):
    run_dir = tiny_full_run.parent / "runs" / "tiny"
    for table in ("latent", "radiomics"):
        df = pd.read_parquet(run_dir / "extract" / f"{table}.parquet")
        num = df.select_dtypes("number")
        assert len(df) > 0 and np.isfinite(num.to_numpy()).all(), table
    state = torch.load(run_dir / "pretrain" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
