"""Run one per-lesion function over many lesions: in this process, on a process pool, or on a Dask cluster.

All three executors call the same ``fn(task, shared)`` and yield its results as they complete (callers key them by
lesion, so completion order never reaches a table). ``shared`` (e.g. the validated PyRadiomics specs) is sent once
per worker, not once per task: the process pool hands it to each worker's initializer, Dask scatters it to every
worker (``broadcast=True``). ``fn`` must be a module-level function (picklable) that returns, not raises, for
per-lesion problems; an exception escaping ``fn`` is a bug and stops the run.

Process pools use the ``spawn`` start method: workers start clean (no inherited torch / ITK thread state), at the
cost of one import of radae per worker. ``executor="dask"`` connects to ``dask_address`` (``tcp://host:8786``) or
starts a ``LocalCluster`` of ``n_jobs`` single-threaded workers; remote workers need radae installed and the image
paths readable. Lesions go to Dask in batches (:func:`dask_batches`): per-lesion Dask tasks cost more in scheduling
than a 40 ms PyRadiomics call can carry.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

from radae.util.errors import ExtractError
from radae.util.progress import progress_iter
from radae.util.threads import single_threaded_worker

logger = logging.getLogger(__name__)

EXECUTORS = ("serial", "process", "dask")
DASK_CONNECT_TIMEOUT_S = 30
DASK_BATCH_MAX = 16
#: Dask settings for the LocalCluster radae starts. The worker's statistical profiler samples every thread each
#: 10 ms under the GIL; on PyRadiomics (much of it Python) that cost ~25 % of the workers' throughput
#: (benchmarks/bench_extract.py). A cluster of your own (``dask_address``) keeps its own settings.
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False}
_WORKER_SHARED: Any = None


def _init_worker(shared: Any, parent_pid: int | None = None) -> None:
    global _WORKER_SHARED
    if parent_pid is not None:
        from radae.util.procutil import die_with_parent

        die_with_parent(parent_pid)
    _WORKER_SHARED = shared
    single_threaded_worker()


def _call_in_worker(fn: Callable, task: Any) -> Any:
    return fn(task, _WORKER_SHARED)


def _apply_batch(tasks: list, fn: Callable, shared: Any) -> list:
    return [fn(t, shared) for t in tasks]


def dask_batches(tasks: Sequence[Any], n_workers: int) -> list[list[Any]]:
    """Tasks grouped for Dask: up to DASK_BATCH_MAX lesions a Dask task, and at least 4 Dask tasks per worker.

    One Dask task per lesion costs each ~40 ms lesion ~20 ms of scheduler, comms and GIL time in the worker
    (``benchmarks/bench_extract.py``: 1.5x on 2 workers); batches of 16 bring that to ~1.9x.
    """
    size = max(1, min(DASK_BATCH_MAX, len(tasks) // max(4 * n_workers, 1)))
    return [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]


def map_tasks(
    fn: Callable[[Any, Any], Any],
    tasks: Sequence[Any],
    shared: Any = None,
    *,
    executor: str = "process",
    n_jobs: int = 1,
    dask_address: str | None = None,
    dask_processes: bool = True,
    desc: str = "",
    quiet: bool = False,
) -> Iterator[Any]:
    """Yield ``fn(task, shared)`` for every task, in completion order.

    ``executor="process"`` with ``n_jobs == 1`` (or a single task) runs serially in this process.
    ``dask_processes=False`` makes the LocalCluster use threads in this process (fast start; for tests).
    """
    if executor not in EXECUTORS:
        raise ExtractError(f"extract.executor: expected one of {EXECUTORS}, got {executor!r}")
    tasks = list(tasks)
    if not tasks:
        return iter(())
    if executor == "dask":
        it = _dask(fn, tasks, shared, n_jobs, dask_address, dask_processes)
    elif executor == "serial" or n_jobs <= 1 or len(tasks) == 1:
        it = (fn(t, shared) for t in tasks)
    else:
        it = _pool(fn, tasks, shared, n_jobs)
    return progress_iter(it, total=len(tasks), desc=desc, quiet=quiet)


def start_method() -> str:
    """``spawn`` (clean workers) once torch is loaded (its OpenMP/thread state must not be forked); ``fork`` before
    that on Linux (``radae features`` without a model): a spawned worker re-imports radae and PyRadiomics, ~1 s of a
    core each, which a short job cannot earn back. Env ``RADAE_START_METHOD`` overrides."""
    import sys

    forced = os.environ.get("RADAE_START_METHOD")
    if forced:
        return forced
    return "fork" if sys.platform == "linux" and "torch" not in sys.modules else "spawn"


def submit_all(fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any, n_jobs: int, method: str = "fork"):
    """A process pool of ``n_jobs`` workers (``shared`` handed to each once) already running ``fn(task, shared)`` on
    every task: ``(executor, futures)`` in task order, for a caller that collects the results later and shuts the
    executor down itself (:mod:`radae.features.prefetch`)."""
    ctx = multiprocessing.get_context(method)
    ex = ProcessPoolExecutor(max_workers=max(1, min(n_jobs, len(tasks))), mp_context=ctx, initializer=_init_worker,
                             initargs=(shared, os.getpid()))
    return ex, [ex.submit(_call_in_worker, fn, t) for t in tasks]


def _pool(fn, tasks, shared, n_jobs) -> Iterator[Any]:
    ctx = multiprocessing.get_context(start_method())
    workers = min(n_jobs, len(tasks))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(shared, os.getpid())) as ex:
        pending = {ex.submit(_call_in_worker, fn, t) for t in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        raise ExtractError(
                            "a worker process of the extraction pool died (out of memory, or a script run without an "
                            "`if __name__ == '__main__':` guard cannot be re-imported by spawned workers) -> lower "
                            "extract.n_jobs or use n_jobs: 1") from None
        finally:
            for fut in pending:
                fut.cancel()


def _dask(fn, tasks, shared, n_jobs, address, processes) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - a declared dependency
        raise ExtractError("extract.executor is 'dask' but dask.distributed is not installed -> pip install 'dask[distributed]'") from None
    cluster = None
    try:
        if address:
            try:
                client = Client(address, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as e:
                raise ExtractError(f"extract.dask_address: cannot reach the Dask scheduler at {address} ({e}) "
                                   "-> start it, fix the address, or leave dask_address empty for a local cluster") from None
        else:
            import dask

            with dask.config.set(LOCAL_CLUSTER_CONFIG):  # the nannies hand this config to their workers
                cluster = LocalCluster(n_workers=max(1, n_jobs), threads_per_worker=1, processes=processes,
                                       dashboard_address=None, silence_logs=logging.WARNING)
            client = Client(cluster)
        with client:
            if cluster is None or processes:
                client.run(single_threaded_worker)  # worker processes only; a threaded LocalCluster is this process
            # a list of one: scatter() would split a dict into one future per value
            shared_f = client.scatter([shared], broadcast=True)[0] if shared is not None else None
            n_workers = len(client.scheduler_info().get("workers", {})) or max(1, n_jobs)
            futures = client.map(_apply_batch, dask_batches(tasks, n_workers), fn=fn, shared=shared_f, pure=False)
            for fut in as_completed(futures):
                yield from fut.result()
                fut.release()
    finally:
        if cluster is not None:
            cluster.close()
