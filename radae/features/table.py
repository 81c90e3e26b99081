"""Feature tables on disk: deterministic column and row order, atomic Parquet + CSV twins, provenance, aggregation.

A lesion table has one row per lesion: ``case_id, patient_id`` first, then the features in a fixed order
(:func:`feature_order`), rows sorted by ``(patient_id, case_id)``. It is written as Parquet and as a CSV twin, each
through :func:`radae.fsutil.atomic_path` (temp file + rename), so a crash never leaves a half-written table.

Provenance travels with the data: the Parquet schema metadata key ``radae.provenance`` holds the table's provenance
(versions, config hashes, checkpoint sha256, per-lesion input hashes) as JSON. The creation date goes only into the
sidecar ``provenance.json`` so that identical inputs give byte-identical tables.

Patient-level tables (``extract.aggregate``): ``largest`` keeps each patient's largest lesion (by
``lesion_volume_ml``; ties -> smallest case_id), ``volume_weighted_mean`` averages every feature over the patient's
lesions weighted by lesion volume (NaN values are left out and the weights renormalised).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from radae.errors import ExtractError
from radae.fsutil import atomic_path

KEYS = ["case_id", "patient_id"]
PROVENANCE_KEY = b"radae.provenance"
CLASS_ORDER = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_RADIOMICS_COL = re.compile(r"^(?P<image>[A-Za-z0-9.\-]+)_(?P<cls>shape2D|shape|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_(?P<feat>[A-Za-z0-9]+)$")
_LATENT_COL = re.compile(r"^latent_(\d+)$")
_LOG = re.compile(r"^log-sigma-(\d+)-(\d+)-mm-3D$")


def parse_radiomics_column(name: str) -> tuple[str, str, str] | None:
    """``original_glcm_Contrast`` -> ("original", "glcm", "Contrast"); None if not a PyRadiomics feature name."""
    m = _RADIOMICS_COL.match(name)
    return (m["image"], m["cls"], m["feat"]) if m else None


def _image_type_key(image: str) -> tuple:
    if image == "original":
        return (0, 0.0, image)
    m = _LOG.match(image)
    if m:
        return (1, float(f"{m[1]}.{m[2]}"), image)
    if image.startswith("wavelet"):
        return (2, 0.0, image)
    return (3, 0.0, image)


def feature_order(columns) -> list[str]:
    """Feature columns in a fixed order: latents by index; PyRadiomics by image type (original, LoG by sigma,
    wavelet, others), then feature class (shape, firstorder, glcm, glrlm, glszm, gldm, ngtdm), then name."""
    lat, rad, other = [], [], []
    for c in columns:
        if c in KEYS:
            continue
        m = _LATENT_COL.match(str(c))
        p = parse_radiomics_column(str(c))
        if m:
            lat.append((int(m[1]), c))
        elif p:
            rad.append((_image_type_key(p[0]), CLASS_ORDER.index(p[1]), p[2], c))
        else:
            other.append(c)
    return [c for _, c in sorted(lat)] + [x[-1] for x in sorted(rad)] + sorted(other)


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Keys first, features in :func:`feature_order`, rows by (patient_id, case_id), keys as text, features float64."""
    missing = [k for k in KEYS if k not in df.columns]
    if missing:
        raise ExtractError(f"feature table lacks key column(s) {missing}")
    out = df.copy()
    for k in KEYS:
        out[k] = out[k].astype(str)
    cols = feature_order(out.columns)
    out = out[KEYS + cols]
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="raise").astype(np.float64)
    dup = out["case_id"].duplicated()
    if dup.any():
        raise ExtractError(f"feature table: case_id {out['case_id'][dup].iloc[0]!r} appears twice (one row per lesion)")
    return out.sort_values(["patient_id", "case_id"], kind="mergesort").reset_index(drop=True)


def write_table(df: pd.DataFrame, parquet_path: str | Path, provenance: dict | None = None) -> tuple[Path, Path]:
    """Write ``df`` (already canonical) to ``<name>.parquet`` and ``<name>.csv`` atomically; returns both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_path = Path(parquet_path)
    csv_path = parquet_path.with_suffix(".csv")
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    if provenance is not None:
        meta[PROVENANCE_KEY] = json.dumps(json_clean(provenance), sort_keys=True, allow_nan=False, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    with atomic_path(csv_path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")
    return parquet_path, csv_path


def read_provenance(parquet_path: str | Path) -> dict:
    """The ``radae.provenance`` JSON stored in a table's Parquet metadata ({} if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet_path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def aggregate_patients(df: pd.DataFrame, volume_ml: pd.Series, how: str) -> pd.DataFrame:
    """One row per patient from a canonical lesion table.

    ``volume_ml``: lesion volume indexed by case_id. Returns ``patient_id, n_lesions, case_ids`` (``;``-joined,
    the lesions used) and the features; ``how`` is ``largest`` or ``volume_weighted_mean``.
    """
    if how not in ("largest", "volume_weighted_mean"):
        raise ExtractError(f"extract.aggregate: {how!r} does not make a patient table (use largest or volume_weighted_mean)")
    feats = [c for c in df.columns if c not in KEYS]
    vol = volume_ml.reindex(df["case_id"]).to_numpy(dtype=float)
    if not np.isfinite(vol).all():
        bad = df["case_id"][~np.isfinite(vol)].iloc[0]
        raise ExtractError(f"case {bad}: no lesion volume in preprocess/rois.parquet, so lesions cannot be aggregated "
                           "per patient -> use extract.aggregate: all")
    work = df.assign(_vol=vol)
    rows = []
    for pid, grp in work.groupby("patient_id", sort=True):
        grp = grp.sort_values(["_vol", "case_id"], ascending=[False, True], kind="mergesort")
        row = {"patient_id": pid, "n_lesions": len(grp)}
        if how == "largest":
            row["case_ids"] = grp["case_id"].iloc[0]
            row.update(grp[feats].iloc[0].to_dict())
        else:
            row["case_ids"] = ";".join(sorted(grp["case_id"]))
            vals = grp[feats].to_numpy(dtype=float)
            w = grp["_vol"].to_numpy(dtype=float)[:, None] * np.isfinite(vals)
            num = np.nansum(vals * w, axis=0)
            den = w.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                row.update(dict(zip(feats, np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))))
        rows.append(row)
    out = pd.DataFrame(rows, columns=["patient_id", "n_lesions", "case_ids", *feats])
    out["n_lesions"] = out["n_lesions"].astype(np.int64)
    for c in feats:
        out[c] = out[c].astype(np.float64)
    return out


def write_patient_table(df: pd.DataFrame, parquet_path: str | Path, provenance: dict | None = None) -> tuple[Path, Path]:
    """Like :func:`write_table` for a patient-level table (patient_id first)."""
    return write_table(df.sort_values("patient_id", kind="mergesort").reset_index(drop=True), parquet_path, provenance)


def json_clean(obj):
    """Replace non-finite floats by None (strict JSON) recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_clean(obj.item())
    return obj
