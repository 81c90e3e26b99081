"""Synthetic run folders for benchmark tests: tables that follow the run-folder contract, with planted signal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radae.config import PipelineConfig
from radae.preprocess.store import save_roi


def make_run(
    run_dir: Path,
    n_patients: int = 40,
    multi_fraction: float = 0.25,
    n_latent: int = 8,
    n_noise_radiomics: int = 6,
    signal: float = 2.0,
    seed: int = 0,
    roi_vox: int = 8,
) -> pd.DataFrame:
    """Write ingest/cases.parquet, preprocess/rois.parquet (+ ROI npz), extract/latent.parquet, extract/radiomics.parquet.

    A patient-level latent factor z drives the label (logistic), the hazard of death, latent_000 and
    original_firstorder_Mean; every other column is noise. Some patients get two lesions that share z.
    Returns the cases table.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n_patients)
    label = (signal * z + rng.logistic(size=n_patients) > 0).astype(int)
    t_event = rng.exponential(np.exp(-signal * 0.5 * z)) * 100.0
    t_cens = rng.uniform(20, 300, size=n_patients)
    rows = []
    for p in range(n_patients):
        n_les = 2 if rng.random() < multi_fraction else 1
        for k in range(n_les):
            rows.append({
                "case_id": f"P{p:03d}_L{k}", "patient_id": f"P{p:03d}", "image": "", "mask": "", "mask_label": None,
                "modality": "CT", "is_evaluation": False, "label": label[p],
                "os_time": float(min(t_event[p], t_cens[p])), "os_event": int(t_event[p] <= t_cens[p]),
                "age": float(60 + 10 * rng.normal()), "sex": ["F", "M"][int(rng.random() < 0.5)], "_z": z[p],
            })
    cases = pd.DataFrame(rows)
    n = len(cases)
    zz = cases.pop("_z").to_numpy()
    for sub in ("ingest", "preprocess", "extract"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)

    volume = np.exp(rng.normal(1.0, 0.5, size=n))
    roi_rows = []
    for i, cid in enumerate(cases["case_id"]):
        img = rng.normal(size=(roi_vox,) * 3).astype(np.float32) + 0.3 * zz[i]
        mask = np.zeros((roi_vox,) * 3, np.uint8)
        mask[2:-2, 2:-2, 2:-2] = 1
        path = run_dir / "preprocess" / "rois" / f"{cid}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_roi(path, img, mask, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        roi_rows.append({"case_id": cid, "patient_id": cases["patient_id"].iloc[i], "roi_path": str(path),
                         "lesion_volume_ml": float(volume[i]), "modality": "CT"})
    pd.DataFrame(roi_rows).to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)

    lat = pd.DataFrame(rng.normal(size=(n, n_latent)), columns=[f"latent_{j:03d}" for j in range(n_latent)])
    lat["latent_000"] = zz + 0.3 * rng.normal(size=n)
    lat.insert(0, "patient_id", cases["patient_id"].to_numpy())
    lat.insert(0, "case_id", cases["case_id"].to_numpy())
    lat.to_parquet(run_dir / "extract" / "latent.parquet", index=False)

    rad = pd.DataFrame({"case_id": cases["case_id"], "patient_id": cases["patient_id"]})
    rad["original_shape_VoxelVolume"] = volume * 1000.0
    rad["original_shape_MeshVolume"] = volume * 990.0  # near-duplicate of VoxelVolume
    rad["original_firstorder_Mean"] = zz + 0.5 * rng.normal(size=n)
    for j in range(n_noise_radiomics):
        rad[f"original_glcm_Noise{j}"] = rng.normal(size=n)
    rad["diagnostics_Versions_PyRadiomics"] = "3.0.1"
    rad.to_parquet(run_dir / "extract" / "radiomics.parquet", index=False)
    return cases


def pipeline_config(run_dir: Path, **benchmark) -> PipelineConfig:
    """A PipelineConfig whose run folder is ``run_dir`` and whose benchmark section is ``benchmark``."""
    base = {
        "classification": {"label": "label"},
        "cv": {"folds": 3, "repeats": 1, "inner_folds": 2, "seed": 0},
        "bootstrap": 50,
        "robustness": {"enabled": False},
    }
    base.update(benchmark)
    return PipelineConfig.model_validate({
        "name": run_dir.name, "runs_dir": str(run_dir.parent), "data": {"synth": {"cases": 8}}, "benchmark": base,
    })
