"""Issue 15, "silently wrong or leaking" items 1-8: each input ran to rc 0 with a wrong or leaking result before.

Item 5's pretraining half is in tests/train/test_mixed_modalities.py (it needs that folder's run builder); the
RTSTRUCT fallback is in tests/io/test_rtstruct_fallback.py.
"""
from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from radae.cli import app
from radae.config import PreprocessConfig, load_pipeline
from radae.util.csvsafe import neutralise_cell
from radae.util.errors import IngestError, PreprocessError
from radae.features import table as tbl
from radae.features.aggregate import aggregate_by_modality, modality_columns
from radae.io import read_image
from radae.io.dicom import read_dicom_series
from radae.preprocess.lesion import preprocess_lesion
from radae.runner import run_pipeline
from radae.data.synth import generate_cohort


def _write(arr, path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path), True)
    return path


# ----------------------------------------------------------------------------- 1, 2: identity from the manifest
@pytest.fixture
def cohort(tmp_path):
    """A 4-patient synthetic cohort whose case ids do not contain the patient ids (so pseudonymising keeps them)."""
    df = generate_cohort(tmp_path / "data", cases=4, seed=0, size_vox=24, multi_lesion_fraction=0.0, unlabeled=0)
    df["case_id"] = [f"lesion_{i:03d}" for i in range(len(df))]
    df["image"] = [str(tmp_path / "data" / p) for p in df["image"]]
    df["mask"] = [str(tmp_path / "data" / p) for p in df["mask"]]
    df[["case_id", "patient_id", "image", "mask", "mask_label", "modality"]].to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"name": "idt", "runs_dir": str(tmp_path / "runs"), "seed": 0, "threads": 1, "stages": ["ingest", "preprocess"],
           "data": {"manifest": str(tmp_path / "manifest.csv")},
           "preprocess": {"spacing_mm": [1.5, 1.5, 1.5], "roi_size_vox": [16, 16, 16], "patches": {"per_volume": 0}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def _rois(tmp_path) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "runs" / "idt" / "preprocess" / "rois.parquet")


def test_pseudonymised_run_after_a_plain_run_does_not_leak_raw_ids_from_the_cache(cohort, monkeypatch):
    raw = set(pd.read_csv(cohort / "manifest.csv")["patient_id"].astype(str))
    run_pipeline(load_pipeline(cohort / "p.yaml"), quiet=True)
    assert set(_rois(cohort)["patient_id"]) == raw
    monkeypatch.setenv("RADAE_PSEUDO_KEY", "k" * 32)
    doc = yaml.safe_load((cohort / "p.yaml").read_text())
    doc["data"]["pseudonymise_patients"] = True
    (cohort / "p.yaml").write_text(yaml.safe_dump(doc))
    ctx = run_pipeline(load_pipeline(cohort / "p.yaml"), quiet=True)
    assert json.loads((ctx.run_dir / "preprocess" / "summary.json").read_text())["cache_hits"] == 4  # cache shared
    rois = _rois(cohort)
    assert not set(rois["patient_id"]) & raw and all(p.startswith("P") and len(p) == 17 for p in rois["patient_id"])
    cached = [json.loads(p.read_text()) for p in (ctx.cache_dir / "preprocess").rglob("meta.json")]
    assert cached and not any(raw & {str(v) for v in m.values()} for m in cached)  # nothing identifying in the cache


def test_patient_id_edited_after_a_run_is_not_served_stale(cohort):
    run_pipeline(load_pipeline(cohort / "p.yaml"), quiet=True)
    m = pd.read_csv(cohort / "manifest.csv")
    m.loc[0, "patient_id"] = "RENAMED_01"
    m.to_csv(cohort / "manifest.csv", index=False)
    run_pipeline(load_pipeline(cohort / "p.yaml"), quiet=True)
    rois = _rois(cohort).set_index("case_id")
    assert rois.loc[m.loc[0, "case_id"], "patient_id"] == "RENAMED_01"


# ----------------------------------------------------------------------------- 3: gzip CRC
def _nifti_gz(tmp_path, n: int = 12):
    arr = np.random.default_rng(0).normal(0, 100, (n, n, n)).astype(np.float32)
    return _write(arr, tmp_path / "img.nii.gz")


def _gzip_ok(data: bytes) -> bool:
    try:
        gzip.decompress(data)
        return True
    except (OSError, EOFError, ValueError, Exception):
        return False


def test_a_flipped_bit_in_a_nii_gz_is_an_error_wherever_gzip_sees_it(tmp_path):
    src = _nifti_gz(tmp_path, 64)  # large enough that ITK stops reading before the gzip trailer (a 12^3 file it reads whole)
    good = src.read_bytes()
    positions = [len(good) - 8, len(good) - 5, len(good) - 2] + list(np.linspace(40, len(good) - 20, 12).astype(int))
    bad_streams = 0
    for i, pos in enumerate(positions):
        data = bytearray(good)
        data[pos] ^= 0x10
        if _gzip_ok(bytes(data)):
            continue  # a flip gzip itself cannot see (e.g. in the header's mtime): nothing to detect
        bad_streams += 1
        path = tmp_path / f"flip{i}.nii.gz"
        path.write_bytes(bytes(data))
        with pytest.raises(IngestError, match=r"corrupt|cut off|truncated|cannot read") as err:
            read_image(path, case_id="c1")
        assert f"file {path}" in str(err.value)
    assert bad_streams >= 10


def test_validate_exits_non_zero_on_a_corrupt_or_truncated_nii_gz(tmp_path):
    img, mask = _nifti_gz(tmp_path), tmp_path / "mask.nii.gz"
    _write((np.arange(12 ** 3).reshape(12, 12, 12) % 5 == 0).astype(np.uint8), mask)
    pd.DataFrame([{"case_id": "c1", "patient_id": "p1", "image": str(img), "mask": str(mask), "modality": "CT"}]).to_csv(
        tmp_path / "m.csv", index=False)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "v", "runs_dir": str(tmp_path / "runs"),
                                                     "data": {"manifest": str(tmp_path / "m.csv")}}))
    cli = CliRunner()
    assert cli.invoke(app, ["validate", str(tmp_path / "p.yaml")]).exit_code == 0
    data = bytearray(img.read_bytes())
    data[-6] ^= 0x01  # CRC-32 of the stream
    img.write_bytes(bytes(data))
    r = cli.invoke(app, ["validate", str(tmp_path / "p.yaml")])
    assert r.exit_code != 0 and "CRC" in r.output and str(img) in r.output
    img.write_bytes(bytes(data[: len(data) // 2]))
    r = cli.invoke(app, ["validate", str(tmp_path / "p.yaml")])
    assert r.exit_code != 0 and "cut off" in r.output


# ----------------------------------------------------------------------------- 4: CT not in HU
def test_uint16_ct_without_rescale_is_refused_naming_the_fix(tmp_path, data_root):
    base = data_root / "ibsi" / "ibsi1_ct_phantom_PAT1" / "nifti"
    hu = sitk.ReadImage(str(base / "phantom.nii.gz"))  # chest CT crop in HU: median -8
    raw = sitk.Cast(sitk.Clamp(hu, sitk.sitkFloat32, -1024, 3000) + 1024, sitk.sitkUInt16)  # stored values, no rescale
    sitk.WriteImage(raw, str(tmp_path / "raw.nii.gz"))
    row = {"case_id": "pat1", "patient_id": "PAT1", "modality": "CT", "image": str(tmp_path / "raw.nii.gz"),
           "mask": str(base / "mask.nii.gz"), "mask_label": 1, "image_sha256": "x", "mask_sha256": "y"}
    cfg = PreprocessConfig(spacing_mm=(2.0, 2.0, 3.0), roi_size_vox=(16, 16, 16))
    with pytest.raises(PreprocessError, match=r"not Hounsfield units .*Rescale Slope/Intercept") as err:
        preprocess_lesion(row, cfg, tmp_path / "cache", 0)
    assert "case pat1" in str(err.value) and "raw.nii.gz" in str(err.value)
    row["image"] = str(base / "phantom.nii.gz")  # the same scan in HU is processed
    assert preprocess_lesion(row, cfg, tmp_path / "cache", 0)["voxel_count"] == 125256


# ----------------------------------------------------------------------------- 5: one column, one modality
def test_patient_table_aggregates_each_modality_on_its_own():
    lesions = pd.DataFrame({"case_id": ["a_mr", "a_pet", "b_mr", "b_mr2", "c_pet"],
                            "patient_id": ["A", "A", "B", "B", "C"], "latent_0": [1.0, 10.0, 2.0, 3.0, 20.0]})
    volume = pd.Series({"a_mr": 1.0, "a_pet": 5.0, "b_mr": 2.0, "b_mr2": 4.0, "c_pet": 1.0})
    modality = pd.Series({"a_mr": "MR", "a_pet": "PET", "b_mr": "MR", "b_mr2": "MR", "c_pet": "PET"})
    # before: 'largest' took A's PET lesion (larger) and B's MR lesion into the same column
    mixed = tbl.aggregate_patients(lesions, volume, "largest")
    assert mixed["latent_0"].tolist() == [10.0, 3.0, 20.0]
    out = pd.concat(list(aggregate_by_modality([lesions.iloc[:3], lesions.iloc[3:]], volume, modality, "largest",
                                               ["MR", "PET"])), ignore_index=True)
    assert list(out.columns) == list(modality_columns(["latent_0"], ["MR", "PET"]))
    assert out["patient_id"].tolist() == ["A", "B", "C"]
    assert out["MR_latent_0"].tolist()[:2] == [1.0, 3.0] and np.isnan(out["MR_latent_0"].iloc[2])
    assert np.isnan(out["PET_latent_0"].iloc[1]) and out["PET_latent_0"].tolist()[::2] == [10.0, 20.0]
    assert out["n_lesions"].tolist() == [2, 2, 1] and out["MR_n_lesions"].tolist() == [1, 2, 0]
    assert out["case_ids"].tolist() == ["a_mr;a_pet", "b_mr2", "c_pet"]


# ----------------------------------------------------------------------------- 6: sheared axes
def test_sheared_direction_cosines_are_refused(tmp_path):
    p = _nifti_gz(tmp_path)
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[280:328] = struct.pack("<12f", -1, 0.3, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0)  # srow_x/y/z: x and y axes at 73 degrees
    sheared = tmp_path / "sheared.nii.gz"
    sheared.write_bytes(gzip.compress(bytes(raw)))
    assert struct.unpack("<h", bytes(raw[254:256]))[0] > 0  # the sform is in use
    with pytest.raises(IngestError, match=r"case c1: file .*sheared\.nii\.gz: .*not orthonormal .*sheared.*orthogonal voxel grid"):
        read_image(sheared, case_id="c1")


# ----------------------------------------------------------------------------- 7: CSV formula injection
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_parquet_keeps_them(tmp_path):
    ids = ["=HYPERLINK(http://x)", "=1+2", "@SUM(A1)", "+1+1", "-2+3", "\tx", "\rx", "ok", "-5", "1e-3"]
    df = pd.DataFrame({"case_id": [f"c{i}" for i in range(len(ids))], "patient_id": ids,
                       "latent_0": [-1.5, 2.0, -0.25, 0, 1, 2, 3, 4, 5, -7.0]})
    path = tmp_path / "latent.parquet"
    with tbl.TableWriter(path, {"case_id": "text", "patient_id": "text", "latent_0": "float"}) as w:
        w.write(df)
    assert pd.read_parquet(path)["patient_id"].tolist() == ids  # raw in Parquet
    back = pd.read_csv(tmp_path / "latent.csv", dtype={"patient_id": str}, keep_default_na=False)
    lines = (tmp_path / "latent.csv").read_text().split("\n")
    assert [ln.split(",")[1] for ln in lines[1:6]] == ["'" + v for v in ids[:5]]
    raw = (tmp_path / "latent.csv").read_bytes().decode()
    assert "\nc5,'\tx," in raw and "\nc6,'\rx," in raw
    assert back["patient_id"].tolist()[-3:] == ["ok", "-5", "1e-3"]  # plain text and numbers-as-text unchanged
    assert raw.rstrip("\n").split("\n")[-1] == "c9,1e-3,-7.0"
    assert [ln.split(",")[-1] for ln in lines[1:4]] == ["-1.5", "2.0", "-0.25"]  # negative numbers stay numbers
    assert neutralise_cell(-3.0) == -3.0 and neutralise_cell("'=1") == "'=1"  # numbers, and idempotent


def test_failures_csv_neutralises_formula_ids(tmp_path):
    from radae.runfolder import RunContext, write_failures

    cfg = load_pipeline(_tiny_cfg(tmp_path))
    ctx = RunContext(cfg=cfg, run_dir=tmp_path / "run", stage_name="preprocess")
    ctx.fail("=cmd|' /C calc'!A0", "bad", "x")
    write_failures(ctx, "preprocess")
    text = (tmp_path / "run" / "failures.csv").read_text()
    assert "'=cmd" in text and "\n=cmd" not in text


def _tiny_cfg(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "runs_dir": str(tmp_path / "runs"), "data": {"synth": {"cases": 4}}}))
    return p


# ----------------------------------------------------------------------------- 8: DICOM free text
def test_dicom_free_text_never_reaches_messages_or_meta(tmp_path, dicom_factory):
    secret = "DOE^JOHN MRN 1234567 comment"
    arr = np.zeros((3, 8, 8), np.int16)
    dicom_factory.write_ct_series(tmp_path / "s", arr, description=secret)
    dicom_factory.write_ct_series(tmp_path / "s2", arr, description=secret + " 2")
    dicom_factory.copy_slices(sorted((tmp_path / "s2").glob("*.dcm")), tmp_path / "s",
                              series_uid="1.2.826.0.1.3680043.8.498.77", new_sop_uids=True)
    log = io.StringIO()
    import logging

    handler = logging.StreamHandler(log)
    logging.getLogger("radae").addHandler(handler)
    try:
        with pytest.raises(IngestError) as err:
            read_dicom_series(tmp_path / "s", case_id="c1")
        vol = read_dicom_series(tmp_path / "s", series_uid="1.2.826.0.1.3680043.8.498.77", case_id="c1")
    finally:
        logging.getLogger("radae").removeHandler(handler)
    assert "1.2.826.0.1.3680043.8.498.77 (CT, 3 slices)" in str(err.value)  # identified by UID (and the folder)
    assert "DOE" not in str(err.value) and "MRN" not in str(err.value)
    assert "DOE" not in json.dumps(vol.meta, default=str) and "DOE" not in log.getvalue()
