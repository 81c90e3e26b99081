"""Worker processes that die with their parent, and whether a process is still alive.

A ``kill -9`` of radae leaves its pool workers running: they are reparented to init, keep writing the cache and,
forked while the run lock was held, keep the lock's open file. :func:`die_with_parent` is the initializer of every
radae process pool: on Linux the kernel sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
and on every platform a watchdog thread ends the worker once its parent pid changes. It also closes the worker's
copy of the run lock, so the lock is free as soon as the parent is gone (see :func:`radae.util.fsutil.run_lock`).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_S = 0.5


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_S)
        if os.getppid() != parent_pid:
            os._exit(1)


#: file descriptors of run locks this process holds (a forked worker closes its copies: :func:`close_inherited_locks`)
HELD_LOCK_FDS: set[int] = set()


def close_inherited_locks() -> None:
    """In a forked worker: close the copies of the parent's run-lock files (never unlock them: that would free the
    parent's lock). The lock then lives exactly as long as the parent's own descriptor."""
    for fd in list(HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    HELD_LOCK_FDS.clear()


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` dies. Call first thing in a pool worker initializer."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the watchdog still works
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    close_inherited_locks()
    threading.Thread(target=_watch, args=(parent_pid,), name="radae-parent-watchdog", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a dead process its parent has not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


#: allocations between young-generation collections in the command-line process (CPython's default is 700).
#: Importing pandas, pyarrow and PyRadiomics allocates a few hundred thousand long-lived objects; at the default the
#: collector ran ~275 times in a 44-lesion ``radae features`` (57 ms, two full passes among them), at 10,000 18 times
#: (24 ms). The price is at most that many young objects kept a little longer.
YOUNG_GENERATION_THRESHOLD = 10_000


def fewer_young_collections() -> None:
    """Raise the young generation's collection threshold to :data:`YOUNG_GENERATION_THRESHOLD` (never lower it)."""
    import gc

    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GENERATION_THRESHOLD), middle, old)


def skip_final_collection_at_exit() -> None:
    """At interpreter exit, leave the objects of pandas, pyarrow, SimpleITK and PyRadiomics to the OS instead of the
    cyclic collector's last passes over them (~0.1 s of every short command, e.g. ``radae features`` next to
    ``pyradiomics``). Every atexit handler still runs; the freeze is registered by the command-line entry point only,
    never in a process that goes on (a test session keeps its collector)."""
    import atexit
    import gc

    def _freeze() -> None:
        gc.disable()
        gc.freeze()

    atexit.register(_freeze)  # registered before the command runs: atexit handlers run last-in first-out
