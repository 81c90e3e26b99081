"""A synthetic two-site cohort written both ways: one manifest with a ``cohort`` column (A/B), or two manifests.

Shared by the data.validation_manifest tests (ingest, relocation) and the benchmark equivalence test.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from radae.config import load_pipeline
from radae.data.synth import generate_cohort

def write_cohort(folder: Path, cases: int = 40, seed: int = 0) -> pd.DataFrame:
    """``folder``: the cohort's images, ``one.csv`` (with ``cohort``), ``one_eval.txt`` (cohort B's patients),
    ``development.csv`` (cohort A's rows) and ``validation.csv`` (cohort B's), both without the column. Image paths
    stay relative to ``folder``. Returns the one-manifest table."""
    m = generate_cohort(folder, cases=cases, seed=seed, size_vox=24, unlabeled=0, sites=2)
    m.to_csv(folder / "one.csv", index=False)
    b = sorted(m.loc[m["cohort"] == "B", "patient_id"].unique())
    (folder / "one_eval.txt").write_text("\n".join(b) + "\n")
    for name, c in (("development", "A"), ("validation", "B")):
        m[m["cohort"] == c].drop(columns="cohort").to_csv(folder / f"{name}.csv", index=False)
    return m


def write_yaml(folder: Path, name: str, data: str, runs_dir: Path, benchmark: str = "") -> Path:
    """A pipeline YAML in ``folder`` (so relative manifest paths resolve there), preprocess shrunken to 16-voxel ROIs;
    ``data`` and ``benchmark`` are the inner text of flow mappings."""
    p = folder / f"{name}.yaml"
    p.write_text(f"name: {name}\nruns_dir: {runs_dir}\ndata: {{{data}}}\n"
                 f"preprocess: {{spacing_mm: [1.5, 1.5, 1.5], roi_size_vox: [16, 16, 16], patches: {{per_volume: 1}}, "
                 f"n_jobs: 1, cache_dir: {runs_dir / 'cache'}}}\n"
                 f"benchmark: {{classification: {{label: label}}, survival: {{time: os_time, event: os_event}}{benchmark}}}\n")
    return p


TWO = "manifest: development.csv, validation_manifest: validation.csv"
ONE = "manifest: one.csv, evaluation_patients: one_eval.txt"
ONE_EXTERNAL = ", external: {column: cohort, develop: [A], validate: [B]}"


def two_manifest_config(folder: Path, runs_dir: Path, name: str = "two", overrides: tuple[str, ...] = ()):
    return load_pipeline(write_yaml(folder, name, TWO, runs_dir), overrides=list(overrides))


def one_manifest_config(folder: Path, runs_dir: Path, name: str = "one", overrides: tuple[str, ...] = ()):
    return load_pipeline(write_yaml(folder, name, ONE, runs_dir, ONE_EXTERNAL), overrides=list(overrides))
