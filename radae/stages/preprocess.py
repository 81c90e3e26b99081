"""preprocess: every lesion through the shared path; writes preprocess/rois.parquet (index of cached ROIs)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from radae.util.errors import PreprocessError
from radae.features.parallel import single_threaded_worker
from radae.util.fsutil import atomic_path, atomic_write_text
from radae.util.procutil import die_with_parent
from radae.preprocess.lesion import safe_preprocess_lesion
from radae.runfolder import ROI_INDEX_COLUMNS
from radae.util.progress import progress_iter
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)


def _size_bytes(path) -> int:
    """Bytes on disk of an image file or DICOM folder (0 if unreadable): a proxy for the work it takes."""
    try:
        p = Path(str(path))
        return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
    except (OSError, TypeError):
        return 0


def _init_worker(parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a kill -9 of radae must not leave workers writing the cache and holding the lock
    single_threaded_worker()


def preprocess_lesions(rows: list[dict], cfg, cache_dir, seed: int, quiet: bool = True) -> list[tuple]:
    """Every lesion row through :func:`safe_preprocess_lesion`, serially or on ``cfg.n_jobs`` processes.

    Returns ``(meta, error, file)`` per row, in row order. Parallel: largest images first (so the tail is not one big
    volume on one worker) and one SimpleITK thread per worker (n_jobs workers x all cores would oversubscribe).
    """
    jobs = [(r, cfg, cache_dir, seed) for r in rows]
    if cfg.n_jobs <= 1 or len(jobs) <= 1:
        return [safe_preprocess_lesion(j) for j in progress_iter(jobs, total=len(jobs), desc="preprocess", quiet=quiet)]
    order = sorted(range(len(jobs)), key=lambda i: -_size_bytes(rows[i].get("image")))
    with ProcessPoolExecutor(max_workers=min(cfg.n_jobs, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),)) as ex:
        it = ex.map(safe_preprocess_lesion, [jobs[i] for i in order], chunksize=1)
        done = list(progress_iter(it, total=len(jobs), desc="preprocess", quiet=quiet))
    results: list = [None] * len(jobs)
    for i, res in zip(order, done):
        results[i] = res
    return results


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.preprocess
    cases = pd.read_parquet(ctx.run_dir / "ingest" / "cases.parquet")
    rows = cases.to_dict("records")
    results = preprocess_lesions(rows, cfg, ctx.cache_dir, ctx.seed, quiet=ctx.quiet)
    out = []
    hits = 0
    for r, (meta, err, file) in zip(rows, results):
        if err is not None:
            if ctx.cfg.extract.on_error == "raise":
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
