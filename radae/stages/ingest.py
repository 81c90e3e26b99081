"""ingest: validate the manifest, hash inputs, write ingest/cases.parquet."""
from __future__ import annotations

import logging
from pathlib import Path

from radae.fsutil import atomic_path
from radae.hashing import file_sha256
from radae.ingest import evaluation_patients, holdout_patients, validated_manifest
from radae.runner import RunContext, stage

logger = logging.getLogger(__name__)


@stage("ingest", sections=("data",))
def run(ctx: RunContext) -> None:
    df = validated_manifest(ctx.cfg)
    df["image_sha256"] = [file_sha256(p) for p in df["image"]]
    df["mask_sha256"] = [file_sha256(p) if p and Path(p).exists() else "" for p in df["mask"]]
    evals = evaluation_patients(ctx.cfg) or holdout_patients(df, ctx.cfg)
    if not evals:
        logger.warning("ingest: no evaluation patients designated -> pretraining will see every benchmarked patient's images; "
                       "set data.evaluation_patients or data.holdout_fraction (e.g. 0.5) to hold labelled patients out")
    df["is_evaluation"] = df["patient_id"].isin(evals)
    # mixed-type object columns: store as strings so the parquet schema is stable
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: None if v is None else str(v))
    with atomic_path(ctx.stage_dir() / "cases.parquet", suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    logger.info("ingest: %d lesions, %d patients, modalities %s", len(df), df["patient_id"].nunique(),
                sorted(df["modality"].unique()))
