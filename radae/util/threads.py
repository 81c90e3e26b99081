"""CPU thread settings that share a busy machine fairly.

Measured on a shared 2-core machine (``benchmarks/bench_train.py --contend N``): with other CPU-bound processes
running, a pretraining loop whose torch intra-op pool has as many threads as cores loses far more than its fair share,
because OpenMP threads spin-wait at every barrier and each op waits for its slowest (descheduled) thread. radae:

- sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning) before torch starts OpenMP,
  unless the user set it;
- uses as many intra-op threads as the process may use cores (at most 8), a fixed number for a machine, so the
  same run gives the same bytes whatever else the machine is doing; ``threads:`` in the pipeline or env
  ``RADAE_THREADS`` override it, and ``RADAE_THREADS=free`` opts into using only the *free* cores (all cores minus
  the other runnable load, 1-minute load average, at least 1) on a shared machine;
- gives each worker process (PyRadiomics pools, preprocess pools, DataLoader workers) one thread.

The thread count can change floating-point rounding of CPU reductions, which is why the load-dependent count is
opt-in (the count used is in ``environment.json``).
"""
from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 8


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not taken by other runnable processes (1-minute load average), at least 1."""
    cores = usable_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def passive_openmp() -> None:
    """Idle OpenMP threads sleep (effective only before torch/OpenMP start; the user's own setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")  # the same for Intel's OpenMP runtime


def default_threads(requested: int | None = None, world: int = 1) -> int:
    """``requested`` or env RADAE_THREADS (a number, or ``free``), else the usable cores (at most 8) divided among
    ``world`` processes."""
    env = os.environ.get("RADAE_THREADS", "").strip().lower()
    n = requested or (int(env) if env.isdigit() else 0)
    if n:
        return n
    cores = free_cores() if env == "free" else usable_cores()
    return max(1, min(cores, MAX_DEFAULT_THREADS) // max(1, world))


def configure_torch(requested: int | None = None, world: int = 1) -> int:
    """Apply :func:`passive_openmp` and :func:`default_threads` to torch; returns the intra-op thread count."""
    passive_openmp()
    import torch

    n = default_threads(requested, world)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)  # radae runs no independent ops in parallel; only once per process
    except RuntimeError:
        pass
    return n


def single_threaded_worker_env() -> None:
    """For worker processes: one thread for every native pool they may start."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    passive_openmp()


def single_threaded_worker() -> None:
    """For pool workers (PyRadiomics, preprocess): one thread for SimpleITK (filters, resampling) and torch, if
    loaded: n_jobs workers x all cores would oversubscribe."""
    import sys

    import SimpleITK as sitk

    passive_openmp()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
