"""ingest: validate the manifest, hash inputs, write ingest/cases.parquet."""
from __future__ import annotations

import logging
from pathlib import Path

from radae.util.errors import IngestError, case_message
from radae.util.fsutil import atomic_path
from radae.util.hashing import file_sha256
from radae.data.sources import designated_evaluation, validated_manifest
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)


def _hash_or_fail(ctx: RunContext, df, skipped: list[dict]):
    """Content hashes of every row's files; a row whose file vanished (or turned unreadable) since the manifest was
    checked joins ``skipped`` instead of stopping the cohort. Returns the remaining rows."""
    img, msk, keep = [], [], []
    for i, row in df.iterrows():
        try:
            img.append(file_sha256(row["image"]))
            msk.append(file_sha256(row["mask"]) if row["mask"] and Path(row["mask"]).exists() else "")
            keep.append(i)
        except OSError as e:
            file = e.filename or row["image"]
            skipped.append({"case_id": row["case_id"], "file": str(file), "message": case_message(
                row["case_id"], file, f"cannot read the file ({e.strerror or e}); it changed after the manifest was "
                "checked", "restore it, or fix the manifest")})
    out = df.loc[keep].reset_index(drop=True)
    out["image_sha256"], out["mask_sha256"] = img, msk
    return out


def run(ctx: RunContext) -> None:
    skipped: list[dict] = []
    df = validated_manifest(ctx.cfg, skipped=skipped)
    df = _hash_or_fail(ctx, df, skipped)
    if skipped and ctx.cfg.on_error == "raise":
        raise IngestError(skipped[0]["message"] + f" ({len(skipped)} row(s) with missing files; on_error: raise)")
    for s in skipped:  # one failures.csv row each; the other cases go on
        ctx.fail(s["case_id"], s["message"], s["file"])
    if len(df) == 0:
        raise IngestError(f"ingest: none of the {len(skipped)} manifest rows has readable files (first: "
                          f"{skipped[0]['message']})")
    evals, n_val = designated_evaluation(df, ctx.cfg)
    if n_val:
        logger.info("ingest: the %d patients of data.validation_manifest are evaluation patients (kept out of pretraining)", n_val)
    if not evals and "pretrain" in ctx.cfg.stages:  # `radae features` and extract-only runs pretrain nothing
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
