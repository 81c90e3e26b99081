"""Shared fixtures for the reliability tests: the DICOM writer of tests/io and a tiny end-to-end run."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Small enough for CPU tests: 16 labeled + 8 unlabeled patients, 24^3 scans, a two-level autoencoder for 4 steps.
TINY = {
    "seed": 0, "threads": 1,
    "data": {"synth": {"cases": 16, "seed": 0, "size_vox": 24, "multi_lesion_fraction": 0.25}},
    "preprocess": {"spacing_mm": [1.5, 1.5, 1.5], "roi_size_vox": [16, 16, 16], "patches": {"per_volume": 1}},
    "pretrain": {"model": {"channels": [4, 8], "strides": [2, 2], "latent_dim": 6, "num_res_units": 0},
                 "steps": 4, "batch_size": 4, "warmup_steps": 1, "eval_every": 2, "checkpoint_every": 2, "log_every": 1,
                 "val_fraction": 0.34, "device": "cpu"},
    "extract": {"latent": {"device": "cpu"}},
    "benchmark": {"classification": {"label": "label"}, "feature_sets": ["learned", "handcrafted", "volume"],
                  "cv": {"folds": 2, "repeats": 1, "inner_folds": 2}, "bootstrap": 20, "robustness": {"enabled": False},
                  "redundancy": False, "shuffled_control": False},
}


def tiny_yaml(folder: Path, name: str = "tiny", **sections) -> Path:
    """A pipeline YAML for the tiny synthetic run, runs under ``folder/runs``; ``sections`` replace TINY's."""
    doc = {"name": name, "runs_dir": str(folder / "runs"), **TINY, **sections}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def dicom_factory():
    """tests/io/dicom_factory.py (real DICOM files written with pydicom), loaded by path."""
    path = ROOT / "tests" / "io" / "dicom_factory.py"
    spec = importlib.util.spec_from_file_location("radae_tests_dicom_factory", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_full_run(tmp_path_factory):
    """One complete tiny pipeline run (every stage); tests copy it before changing anything."""
    from radae.config import load_pipeline
    from radae.runner import run_pipeline

    folder = tmp_path_factory.mktemp("full")
    path = tiny_yaml(folder)
    ctx = run_pipeline(load_pipeline(path), quiet=True)
    assert ctx.extra["ran"] == ["ingest", "preprocess", "pretrain", "extract", "benchmark", "report"]
    return path


def copy_run(src_yaml: Path, dst: Path) -> Path:
    """Copy a run's runs folder (run + cache) to ``dst`` and return a YAML pointing there."""
    src_runs = src_yaml.parent / "runs"
    shutil.copytree(src_runs, dst / "runs", symlinks=True)
    doc = yaml.safe_load(src_yaml.read_text())
    doc["runs_dir"] = str(dst / "runs")
    out = dst / src_yaml.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
