"""Every lesion of a cohort through the shared preprocessing path, serially or on a process pool.

Parallel runs put the largest images first (so the tail is not one big volume on one worker) and give each worker
one SimpleITK thread (:func:`radae.util.threads.single_threaded_worker`: n_jobs workers x all cores would
oversubscribe); workers die with their parent (:func:`radae.util.procutil.die_with_parent`).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from radae.preprocess.lesion import safe_preprocess_lesion
from radae.util.procutil import die_with_parent
from radae.util.progress import progress_iter
from radae.util.threads import single_threaded_worker


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
