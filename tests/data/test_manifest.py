"""Manifest checks: every problem is reported row by row with file, row, case, what is wrong and what to do."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from radae.config import load_pipeline
from radae.util.errors import ConfigError, ManifestError
from radae.data.sources import validated_manifest
from radae.data.manifest import load_manifest, pseudonymise

SURV = {"required_columns": ("os_time", "os_event", "label"), "numeric_columns": ("os_time",),
        "binary_columns": ("os_event", "label"), "nonnegative_columns": ("os_time",)}


@pytest.fixture
def files(tmp_path):
    """Four image/mask files (content irrelevant: no voxel is read by the manifest checks)."""
    d = tmp_path / "data"
    d.mkdir()
    for n in range(4):
        (d / f"img{n}.nii.gz").write_bytes(b"x")
        (d / f"msk{n}.nii.gz").write_bytes(b"x")
    return d


def _rows(n=4, **cols):
    rows = [{"case_id": f"C{i}", "patient_id": f"P{i}", "image": f"data/img{i}.nii.gz", "mask": f"data/msk{i}.nii.gz",
             "mask_label": 1, "modality": "CT", "os_time": 100.0 + i, "os_event": i % 2, "label": (i + 1) % 2}
            for i in range(n)]
    for col, values in cols.items():
        for r, v in zip(rows, values):
            if v is ...:
                r.pop(col, None)
            else:
                r[col] = v
    return rows


def _write(tmp_path, rows, name="manifest.csv") -> Path:
    p = tmp_path / name
    df = pd.DataFrame(rows)
    df.to_parquet(p) if name.endswith(".parquet") else df.to_csv(p, index=False)
    return p


def _problems(path, **kw) -> list[str]:
    with pytest.raises(ManifestError) as e:
        load_manifest(path, **kw)
    lines = str(e.value).splitlines()
    for line in lines:
        assert line.startswith(f"manifest {path}"), line
        assert " -> " in line, f"no advice in: {line}"
    return lines


def test_valid_manifest_resolves_paths_and_types_outcomes(tmp_path, files):
    p = _write(tmp_path, _rows(os_event=["0", "1", "true", "FALSE"]))
    df = load_manifest(p, **SURV)
    assert df["image"].tolist() == [str(files / f"img{i}.nii.gz") for i in range(4)]
    assert df["os_event"].tolist() == [0, 1, 1, 0] and df["os_time"].dtype == float
    assert df["modality"].tolist() == ["CT"] * 4
    pq = load_manifest(_write(tmp_path, _rows(), "m.parquet"), **SURV)
    assert pq["image"].tolist() == df["image"].tolist()


def test_duplicate_case_ids(tmp_path, files):
    lines = _problems(_write(tmp_path, _rows(case_id=["A", "B", "A", "A"])))
    assert len(lines) == 2
    assert "row 4 (case A): duplicate case_id (first seen in row 2) -> give each lesion its own case_id" in lines[0]
    assert "row 5 (case A)" in lines[1]


@pytest.mark.parametrize("drop, config_cols, expected", [
    ("patient_id", {}, "missing column(s) ['patient_id']"),
    ("modality", {}, "missing column(s) ['modality']"),
    ("os_time", SURV, "missing column(s) ['os_time']"),
])
def test_missing_columns(tmp_path, files, drop, config_cols, expected):
    rows = [{k: v for k, v in r.items() if k != drop} for r in _rows()]
    (line,) = _problems(_write(tmp_path, rows), **config_cols)
    assert expected in line and "present: ['case_id'" in line and "-> add the column(s)" in line
    if config_cols:
        assert "columns named by the config must exist" in line


@pytest.mark.parametrize("col, values, expected", [
    ("os_time", [10, "ten", 30, 40], "row 3 (case C1): os_time = 'ten' is not a number -> use a number"),
    ("os_time", [10, -5, 30, 40], "row 3 (case C1): os_time = -5.0 must not be negative -> check the value"),
    ("os_time", [10, "inf", 30, 40], "row 3 (case C1): os_time = 'inf' is not a finite number"),
    ("os_event", [0, 2, 1, 0], "row 3 (case C1): os_event = 2 must be 0 or 1 -> code it as 1 (yes/event) or 0"),
    ("os_event", [0, "dead", 1, 0], "row 3 (case C1): os_event = 'dead' is not a number"),
    ("label", [0, 1, 0.5, 1], "row 4 (case C2): label = 0.5 must be 0 or 1"),
])
def test_outcome_values(tmp_path, files, col, values, expected):
    lines = _problems(_write(tmp_path, _rows(**{col: values})), **SURV)
    assert any(expected in line for line in lines), lines


def test_empty_outcomes_are_allowed_for_unlabeled_scans(tmp_path, files):
    df = load_manifest(_write(tmp_path, _rows(os_time=[10, None, None, 5], os_event=[1, None, None, 0])), **SURV)
    assert df["os_time"].isna().sum() == 2


def test_conflicting_outcomes_within_a_patient(tmp_path, files):
    rows = _rows(patient_id=["P0", "P0", "P1", "P1"], label=[1, 0, 1, 1], os_time=[5, 5, 7, 7], os_event=[1, 1, 0, 0],
                 site=["lung", "liver", "lung", "bone"])  # a per-lesion column may differ
    (line,) = _problems(_write(tmp_path, rows), **SURV)
    assert "rows [2, 3] (patient P0): conflicting label values ['0.0', '1.0']" in line
    assert "give all its lesions the same value" in line


def test_paths_may_not_escape_the_data_root(tmp_path, files):
    outside = tmp_path / "outside.nii.gz"
    outside.write_bytes(b"x")
    (files / "link.nii.gz").symlink_to(outside)
    rows = _rows(image=["data/img0.nii.gz", "data/../outside.nii.gz", str(outside), "data/link.nii.gz"])
    lines = _problems(_write(tmp_path, rows), root=files)
    assert len(lines) == 3
    for line, case in zip(lines, ("C1", "C2", "C3")):
        assert f"(case {case}): image " in line and f"is outside the data root {files}" in line
        assert "-> move the file under data.root or change data.root" in line
    # without a root the same manifest is fine
    assert len(load_manifest(_write(tmp_path, rows))) == 4


def test_seed_points(tmp_path, files):
    rows = _rows(mask=[None] * 4, seed_x=[1, 1, "a", None], seed_y=[2, None, 2, None], seed_z=[3, 3, 3, None])
    lines = _problems(_write(tmp_path, rows))
    text = "\n".join(lines)
    assert "row 3 (case C1): seed point incomplete: give all of seed_x, seed_y, seed_z or none" in text
    assert "row 4 (case C2): seed point (a, 2.0, 3.0) is not numeric -> give physical LPS coordinates in mm" in text
    assert "row 5 (case C3): no mask and no seed point -> give a mask file or seed_x/y/z" in text
    assert "(case C0)" not in text


def test_missing_files_and_empty_cells(tmp_path, files):
    rows = _rows(image=["data/img0.nii.gz", "data/nope.nii.gz", None, "data/img3.nii.gz"],
                 mask=["data/msk0.nii.gz", "data/msk1.nii.gz", "data/msk2.nii.gz", "data/gone.nii.gz"],
                 patient_id=["P0", "P1", "P2", None])
    text = "\n".join(_problems(_write(tmp_path, rows)))
    assert f"row 3 (case C1): image file not found: {files / 'nope.nii.gz'} -> fix the path" in text
    assert "row 4 (case C2): empty image -> fill it in (required column)" in text
    assert "row 5 (case C3): empty patient_id" in text
    assert f"row 5 (case C3): mask file not found: {files / 'gone.nii.gz'}" in text
    # validate-only mode skips the file checks
    assert len(load_manifest(_write(tmp_path, _rows(image=["x.nii"] * 4)), check_files=False)) == 4


def test_a_device_is_not_an_image(tmp_path, files):
    (line,) = _problems(_write(tmp_path, _rows(image=["data/img0.nii.gz", os.devnull, "data/img2.nii.gz", "data/img3.nii.gz"])))
    assert f"row 3 (case C1): image {os.devnull} is not a regular file or folder" in line


def test_unreadable_or_empty_tables(tmp_path):
    with pytest.raises(ManifestError, match=r"manifest .*absent.csv: file not found"):
        load_manifest(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="cannot parse"):
        load_manifest(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("case_id,patient_id,image,modality\n")
    with pytest.raises(ManifestError, match="no rows -> add one row per lesion"):
        load_manifest(tmp_path / "header.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ManifestError, match="cannot parse"):
        load_manifest(tmp_path / "bad.parquet")
    (tmp_path / "dup.csv").write_text("case_id,case_id ,patient_id,image,modality\nA,B,P,x,CT\n")
    with pytest.raises(ManifestError, match=r"column\(s\) \['case_id'\] appear more than once"):
        load_manifest(tmp_path / "dup.csv")


def test_many_problems_are_listed_together_then_cut(tmp_path, files):
    rows = [dict(r, case_id="same") for r in _rows(4) * 8]  # 31 duplicates
    with pytest.raises(ManifestError) as e:
        load_manifest(_write(tmp_path, rows))
    lines = str(e.value).splitlines()
    assert len(lines) == 20 and lines[-1].endswith("... and 11 more")


def test_modality_filter_and_pseudonymisation(tmp_path, files):
    rows = _rows(modality=["ct", "MR", "mr", "PET"], case_id=["P0_ct", "P1_mr", "P2_mr", "P3_pet"])
    p = _write(tmp_path, rows)
    df = load_manifest(p, modalities=["MR"], pseudonymise_key="secret")
    assert df["modality"].tolist() == ["MR", "MR"]
    assert df["patient_id"].tolist() == [pseudonymise("P1", "secret"), pseudonymise("P2", "secret")]
    assert df["case_id"].tolist() == [pseudonymise("P1", "secret") + "_mr", pseudonymise("P2", "secret") + "_mr"]
    assert pseudonymise("P1", "secret") != pseudonymise("P1", "other") and pseudonymise("P1", "k").startswith("P")
    with pytest.raises(ManifestError, match=r"no rows with modality in \['US'\] -> check data.modalities"):
        load_manifest(p, modalities=["US"])


def test_config_drives_the_checks(tmp_path, files, monkeypatch):
    _write(tmp_path, _rows(os_event=[0, 1, 3, 0]))
    doc = {"name": "m", "runs_dir": str(tmp_path / "runs"), "data": {"manifest": "manifest.csv"},
           "benchmark": {"survival": {"time": "os_time", "event": "os_event"}, "clinical": ["age"]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['age'\]"):
        validated_manifest(load_pipeline(tmp_path / "p.yaml"))
    _write(tmp_path, _rows(os_event=[0, 1, 3, 0], age=[50, 60, 70, 80]))
    with pytest.raises(ManifestError, match=r"row 4 \(case C2\): os_event = 3 must be 0 or 1"):
        validated_manifest(load_pipeline(tmp_path / "p.yaml"))
    # pseudonymisation needs the key in the environment, never in the YAML
    _write(tmp_path, _rows(age=[50, 60, 70, 80]))
    cfg = load_pipeline(tmp_path / "p.yaml", overrides=["data.pseudonymise_patients=true"])
    monkeypatch.delenv("RADAE_PSEUDO_KEY", raising=False)
    with pytest.raises(ConfigError, match="RADAE_PSEUDO_KEY is not set"):
        validated_manifest(cfg)
    monkeypatch.setenv("RADAE_PSEUDO_KEY", "k1")
    df = validated_manifest(cfg)
    assert not set(df["patient_id"]) & {f"P{i}" for i in range(4)}
    assert np.array_equal(df["os_event"], [0, 1, 0, 1])
