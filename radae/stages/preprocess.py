"""preprocess: every lesion through the shared path; writes preprocess/rois.parquet (index of cached ROIs)."""
from __future__ import annotations

import json
import logging

import pandas as pd

from radae.preprocess.parallel import preprocess_lesions
from radae.runfolder import ROI_INDEX_COLUMNS, RunContext
from radae.util.errors import PreprocessError
from radae.util.fsutil import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.preprocess
    cases = pd.read_parquet(ctx.run_dir / "ingest" / "cases.parquet")
    rows = cases.to_dict("records")
    results = preprocess_lesions(rows, cfg, ctx.cache_dir, ctx.seed, quiet=ctx.quiet)
    out = []
    hits = 0
    for r, (meta, err, file) in zip(rows, results):
        if err is not None:
            if ctx.cfg.on_error == "raise":
                raise PreprocessError(err)
            ctx.fail(r["case_id"], err, file)
            continue
        hits += bool(meta.pop("cache_hit", False))
        meta["is_evaluation"] = bool(r.get("is_evaluation", False))
        out.append(meta)
    if not out:
        raise PreprocessError(f"preprocess: all {len(rows)} lesions failed; see {ctx.stage_dir() / 'failures.csv'}")
    df = pd.DataFrame(out)
    cols = ROI_INDEX_COLUMNS + [c for c in df.columns if c not in ROI_INDEX_COLUMNS]
    df = df[cols]
    with atomic_path(ctx.stage_dir() / "rois.parquet", suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    atomic_write_text(ctx.stage_dir() / "summary.json", json.dumps(
        {"lesions": len(rows), "ok": len(out), "failed": len(rows) - len(out), "cache_hits": hits}, indent=1))
    logger.info("preprocess: %d ok (%d from cache), %d failed", len(out), hits, len(rows) - len(out))
