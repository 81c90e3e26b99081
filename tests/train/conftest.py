"""Tiny preprocessed runs (rois.parquet + ROI/patch npz files) built in tmp_path with radae's own store format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radae.preprocess.store import save_patches, save_roi
from radae.runfolder import ROI_INDEX_COLUMNS

SIZE = 16


def blob_volume(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid on a smooth gradient, values roughly in [0, 1]; returns (image, mask)."""
    z, y, x = np.meshgrid(*([np.arange(size)] * 3), indexing="ij")
    c = rng.uniform(0.35, 0.65, 3) * size
    r = rng.uniform(0.15, 0.3, 3) * size
    mask = (((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2) <= 1.0
    g = rng.uniform(-1, 1, 3)
    bg = 0.3 + 0.1 * (g[0] * z + g[1] * y + g[2] * x) / size
    img = bg + rng.uniform(0.3, 0.5) * mask
    return img.astype(np.float32), mask.astype(np.uint8)


def make_preprocessed_run(run_dir: Path, patients: int = 6, patches_per: int = 2, evaluation: tuple[str, ...] = (),
                          modalities: tuple[str, ...] = ("CT",), seed: int = 0, size: int = SIZE) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cache = run_dir / "cache"
    rows = []
    for p in range(patients):
        pid = f"P{p:03d}"
        mod = modalities[p % len(modalities)]
        folder = cache / pid
        img, mask = blob_volume(rng, size)
        save_roi(folder / "roi.npz", img, mask, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        pp = ""
        if patches_per:
            save_patches(folder / "patches.npz", np.stack([blob_volume(rng, size)[0] for _ in range(patches_per)]))
            pp = str(folder / "patches.npz")
        row = {c: "" for c in ROI_INDEX_COLUMNS}
        row.update(case_id=f"{pid}_L1", patient_id=pid, modality=mod, roi_path=str(folder / "roi.npz"), patches_path=pp,
                   preprocess_key=f"key{p}", roi_z=size, roi_y=size, roi_x=size, lesion_volume_ml=float(mask.sum()) / 1000,
                   voxel_count=int(mask.sum()), is_evaluation=pid in evaluation)
        for k in ("orig_spacing_x", "orig_spacing_y", "orig_spacing_z", "spacing_x", "spacing_y", "spacing_z"):
            row[k] = 1.0
        rows.append(row)
    df = pd.DataFrame(rows)[ROI_INDEX_COLUMNS]
    (run_dir / "preprocess").mkdir(parents=True, exist_ok=True)
    df.to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)
    (run_dir / "preprocess" / "_stage.json").write_text(json.dumps({"status": "done", "key": "test"}))
    return df


TINY_PRETRAIN = {
    "model": {"channels": [4, 8], "strides": [2, 2], "latent_dim": 8, "num_res_units": 0},
    "steps": 6, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
    "log_every": 1, "val_fraction": 0.34, "device": "cpu",
    "allow_mixed_modalities": True,  # make_preprocessed_run mixes CT, MR and PET on purpose (per-modality noise)
}


def tiny_yaml(path: Path, runs_dir: Path, name: str = "t", pretrain: dict | None = None, mask_channel: bool = False,
              seed: int = 0) -> Path:
    """A pipeline YAML that only runs pretrain on a run folder prepared by make_preprocessed_run."""
    import yaml

    pre = dict(TINY_PRETRAIN)
    for k, v in (pretrain or {}).items():
        pre[k] = {**pre[k], **v} if isinstance(v, dict) and isinstance(pre.get(k), dict) else v
    doc = {"name": name, "runs_dir": str(runs_dir), "seed": seed, "threads": 1, "stages": ["pretrain"],
           "data": {"synth": {"cases": 4}},
           "preprocess": {"roi_size_vox": [SIZE, SIZE, SIZE], "mask_channel": mask_channel},
           "pretrain": pre}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def tiny_run(tmp_path):
    """(yaml_path, run_dir) for a 6-patient 16^3 CT run."""
    runs = tmp_path / "runs"
    run_dir = runs / "t"
    make_preprocessed_run(run_dir)
    return tiny_yaml(tmp_path / "p.yaml", runs), run_dir
