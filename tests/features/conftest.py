"""Tiny run folders for the extract stage, built in tmp_path with radae's own file formats.

Each lesion: a bright ellipsoid with seeded noise on a small grid, written as

- the PyRadiomics crop (``radiomics_image`` / ``radiomics_mask`` NIfTI, raw intensities, as preprocess writes them),
- an "original" scan (``image`` / ``mask`` NIfTI at a coarser z spacing) for ``grid: original``,
- the ROI ``.npz`` (normalised image + mask, the autoencoder's input),

plus ``ingest/cases.parquet``, ``preprocess/rois.parquet`` and, when asked, ``pretrain/model.pt`` (a seeded
untrained model built with radae.models.build_model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radae.preprocess.store import save_roi
from radae.runfolder import ROI_INDEX_COLUMNS

ROI = 16
MODEL = {"channels": [4, 8], "strides": [2, 2], "latent_dim": 6, "num_res_units": 0, "norm": "instance"}


def ellipsoid(shape, rng: np.random.Generator) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = [n / 2 + rng.uniform(-1, 1) for n in shape]
    r = [n * rng.uniform(0.22, 0.32) for n in shape]
    return ((((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2) <= 1.0).astype(np.uint8)


def write_nifti(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> str:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


def lesion_arrays(rng: np.random.Generator, shape=(14, 14, 14)) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 in HU-like units with integer values, mask uint8)."""
    mask = ellipsoid(shape, rng)
    img = rng.normal(40.0, 12.0, shape) + 80.0 * mask + rng.normal(0, 6.0, shape) * mask
    return np.round(img).astype(np.float32), mask


def make_run(run_dir: Path, n: int = 5, seed: int = 0, patients: list[str] | None = None, model: bool = True,
             mask_channel: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write cases.parquet, rois.parquet (+ files) and optionally pretrain/model.pt; returns (cases, rois)."""
    rng = np.random.default_rng(seed)
    data = run_dir.parent / f"{run_dir.name}_data"
    patients = patients or [f"P{i:02d}" for i in range(n)]
    cases, rois = [], []
    for i, pid in enumerate(patients):
        cid = f"{pid}_L{sum(p == pid for p in patients[:i]) + 1}"
        img, mask = lesion_arrays(rng)
        folder = data / cid
        crop_img = write_nifti(img, folder / "radiomics_image.nii.gz", spacing=(1.5, 1.5, 1.5))
        crop_mask = write_nifti(mask, folder / "radiomics_mask.nii.gz", spacing=(1.5, 1.5, 1.5))
        # "original" scan: the same object sampled at 1.5 x 1.5 x 3 mm
        orig_img = write_nifti(img[::2], folder / "image.nii.gz", spacing=(1.5, 1.5, 3.0))
        orig_mask = write_nifti(mask[::2], folder / "mask.nii.gz", spacing=(1.5, 1.5, 3.0))
        roi_img = np.zeros((ROI,) * 3, np.float32)
        roi_mask = np.zeros((ROI,) * 3, np.uint8)
        roi_img[1:15, 1:15, 1:15] = (img - 40.0) / 80.0
        roi_mask[1:15, 1:15, 1:15] = mask
        save_roi(folder / "roi.npz", roi_img, roi_mask, (1.5, 1.5, 1.5), (0.0, 0.0, 0.0))
        cases.append({"case_id": cid, "patient_id": pid, "image": orig_img, "mask": orig_mask, "mask_label": "",
                      "modality": "CT", "series_uid": "", "image_sha256": f"img{i}", "mask_sha256": f"msk{i}",
                      "is_evaluation": True})
        row = {c: "" for c in ROI_INDEX_COLUMNS}
        row.update(case_id=cid, patient_id=pid, modality="CT", roi_path=str(folder / "roi.npz"),
                   radiomics_image=crop_img, radiomics_mask=crop_mask, preprocess_key=f"pk{i}",
                   image_sha256=f"img{i}", mask_sha256=f"msk{i}", roi_z=ROI, roi_y=ROI, roi_x=ROI,
                   lesion_volume_ml=float(mask.sum()) * 1.5**3 / 1000, voxel_count=int(mask.sum()), is_evaluation=True)
        for k in ("orig_spacing_x", "orig_spacing_y", "spacing_x", "spacing_y", "spacing_z"):
            row[k] = 1.5
        row["orig_spacing_z"] = 3.0
        rois.append(row)
    cases_df, rois_df = pd.DataFrame(cases), pd.DataFrame(rois)[ROI_INDEX_COLUMNS]
    (run_dir / "ingest").mkdir(parents=True, exist_ok=True)
    (run_dir / "preprocess").mkdir(parents=True, exist_ok=True)
    cases_df.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    rois_df.to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)
    if model:
        save_tiny_model(run_dir / "pretrain" / "model.pt", in_channels=2 if mask_channel else 1)
    return cases_df, rois_df


def build_tiny_model(in_channels: int = 1, seed: int = 0):
    import torch

    from radae.config import ModelConfig
    from radae.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weights drawn from a fixed seed without touching the caller's RNG
        model = build_model(ModelConfig(**MODEL), in_channels, (ROI, ROI, ROI))
    return model.eval()


def save_tiny_model(path: Path, in_channels: int = 1, seed: int = 0) -> None:
    from radae.models.checkpoint import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, build_tiny_model(in_channels, seed), None, config_hash="test", step=0, extra={})


def pipeline(runs_dir: Path, name: str = "t", extract: dict | None = None, seed: int = 0):
    """A PipelineConfig that runs only the extract stage (Original image type: fast)."""
    from radae.config import PipelineConfig

    ext = {"radiomics": {"image_types": ["Original"]}}
    for k, v in (extract or {}).items():
        ext[k] = {**ext.get(k, {}), **v} if isinstance(v, dict) else v
    return PipelineConfig.model_validate({
        "name": name, "runs_dir": str(runs_dir), "seed": seed, "stages": ["extract"],
        "data": {"synth": {"cases": 4}}, "preprocess": {"roi_size_vox": [ROI, ROI, ROI], "spacing_mm": [1.5, 1.5, 1.5]},
        "extract": ext,
    })


@pytest.fixture
def tiny_run(tmp_path):
    """(runs_dir, run_dir, cases, rois) for 5 single-lesion patients with a model."""
    runs = tmp_path / "runs"
    run_dir = runs / "t"
    cases, rois = make_run(run_dir)
    return runs, run_dir, cases, rois
