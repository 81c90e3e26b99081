"""No patient-identifying DICOM tag reaches a table, a log or the report; patient ids can be pseudonymised."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.io.dicom_factory import write_ct_series, write_rtstruct

# (PatientName, PatientID, PatientBirthDate) as a hospital PACS would export them
PATIENTS = {"P1": ("Doeberitz^Janine", "MRN4711", "19610203"), "P2": ("Roethlisberg^Richard", "MRN0815", "19550412")}
SECRETS = [s for pat in PATIENTS.values() for s in (*pat, pat[0].split("^")[0])]


def _cohort(tmp_path: Path) -> Path:
    rows = []
    for k, (pid, tags) in enumerate(PATIENTS.items()):
        rng = np.random.default_rng(k)
        arr = rng.normal(40, 10, (12, 24, 24)).astype(np.int16)
        arr[4:9, 8:16, 8:16] += 200
        slices = write_ct_series(tmp_path / pid / "ct", arr, pixel_spacing=(1.0, 1.0), patient=tags)
        square = [(8, 8), (15, 8), (15, 15), (8, 15)]
        write_rtstruct(tmp_path / pid / "rs.dcm", slices, {"GTV": [(z, square) for z in range(4, 9)]})
        rows.append({"case_id": f"{pid}_L1", "patient_id": pid, "image": f"{pid}/ct", "mask": f"{pid}/rs.dcm",
                     "mask_label": "GTV", "modality": "CT"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = {"name": "privacy", "runs_dir": str(tmp_path / "runs"), "stages": ["ingest", "preprocess", "extract", "report"],
           "data": {"manifest": "manifest.csv"},
           "preprocess": {"spacing_mm": [1.0, 1.0, 1.0], "roi_size_vox": [16, 16, 16], "patches": {"per_volume": 0},
                          "cache_dir": str(tmp_path / "cache")},
           "extract": {"latent": {"enabled": False}, "radiomics": {"image_types": ["Original"]}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "p.yaml"


def _leaks(run_dir: Path, log_text: str) -> list[str]:
    found = [f"log: {s}" for s in SECRETS if s in log_text]
    for f in run_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f.relative_to(run_dir)}: {s}" for s in SECRETS if s.encode() in data]
    return found


@pytest.mark.parametrize("pseudonymise", [False, True])
def test_identifying_dicom_tags_never_reach_outputs_or_logs(tmp_path, caplog, monkeypatch, pseudonymise):
    from radae.config import load_pipeline
    from radae.runner import run_pipeline

    yml = _cohort(tmp_path)
    overrides = []
    if pseudonymise:
        monkeypatch.setenv("RADAE_PSEUDO_KEY", "site-secret-key")
        overrides.append("data.pseudonymise_patients=true")
    cfg = load_pipeline(yml, overrides=overrides)
    with caplog.at_level(logging.DEBUG):
        run_pipeline(cfg, quiet=True)
    rad = pd.read_parquet(cfg.run_dir / "extract" / "radiomics.parquet")
    assert len(rad) == 2 and (cfg.run_dir / "report" / "report.html").exists()
    assert _leaks(cfg.run_dir, caplog.text) == []
    if pseudonymise:  # keyed hash: not the manifest's ids, stable, distinct
        assert not set(rad["patient_id"]) & set(PATIENTS) and rad["patient_id"].nunique() == 2
    else:
        assert set(rad["patient_id"]) == set(PATIENTS)
