"""``extract/outcomes.csv``: the outcomes and covariates beside the feature tables, keyed like them.

One row per lesion: ``case_id, patient_id, is_evaluation`` and every manifest column that is not about the image
(outcomes, clinical covariates, anything else the manifest carries), sorted like the feature tables. Id columns
are text: :func:`read_csv_ids` reads any radae CSV with ``case_id``/``patient_id`` kept as strings (pandas would
turn a patient_id "1" into the integer 1 and break merges with the Parquet tables).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from radae.util.csvsafe import to_csv_text
from radae.util.fsutil import atomic_write_text

ID_COLUMNS = ("case_id", "patient_id")
# manifest / ingest columns that describe the image, not the patient
TECHNICAL = {"image", "mask", "mask_label", "seed_x", "seed_y", "seed_z", "modality", "series_uid", "image_sha256", "mask_sha256"}


def read_csv_ids(path: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` with the id columns read as text."""
    return pd.read_csv(path, dtype={c: str for c in ID_COLUMNS}, **kwargs)


def outcomes_table(cases: pd.DataFrame) -> pd.DataFrame:
    """case_id, patient_id, is_evaluation, then the remaining non-technical columns in manifest order."""
    df = cases.copy()
    for c in ID_COLUMNS:
        df[c] = df[c].astype(str)
    if "is_evaluation" not in df:
        df["is_evaluation"] = False
    df["is_evaluation"] = df["is_evaluation"].astype(bool)
    rest = [c for c in df.columns if c not in TECHNICAL and c not in (*ID_COLUMNS, "is_evaluation")]
    return df[[*ID_COLUMNS, "is_evaluation", *rest]].sort_values(list(ID_COLUMNS[::-1]), kind="mergesort").reset_index(drop=True)


def write_outcomes(cases_parquet: Path, out_dir: Path) -> Path:
    path = out_dir / "outcomes.csv"
    atomic_write_text(path, to_csv_text(outcomes_table(pd.read_parquet(cases_parquet)), lineterminator="\n"))
    return path
