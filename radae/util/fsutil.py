"""Filesystem helpers: atomic writes (temp file + rename), a run-folder lock, clear errors for unwritable outputs."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from radae.util.errors import RadaeError, RunLockedError
from radae.util.procutil import HELD_LOCK_FDS, pid_alive

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".radae-tmp-"
# errno values that mean "the output location cannot take this write", not "this input is bad"
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR,
                errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


class OutputWriteError(RadaeError):
    """An output (run folder, cache) cannot be written: disk full, read-only, permissions, a file in the way.

    Never a per-case failure: the whole stage stops, and what was written before stays intact.
    """


def output_write_error(path: str | os.PathLike, e: OSError) -> OutputWriteError:
    reason = e.strerror or str(e)
    # copy and rename errors carry (source, destination): the destination is the file that could not be written
    where = Path(str(e.filename2 or e.filename or path))
    if where.parent.name.startswith(TEMP_PREFIX):  # a temp file of atomic_path: name the file it would replace
        where = where.parent.parent / where.name
    return OutputWriteError(f"file {where}: cannot write ({reason}); earlier outputs are unchanged -> free disk space, "
                            f"make the folder writable or remove what is in the way, then run again")


def ensure_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p`` that raises OutputWriteError (not a bare OSError) when the folder cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_write_error(path, e) from None
    return path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on clean exit fsync and rename it onto ``target``.

    A crash (or exception) leaves ``target`` as it was: never half-written. The temp file has the target's
    own name inside a private ``.radae-tmp-*`` folder, so writers that embed the file name (``torch.save``)
    or pick the format by extension (SimpleITK) behave exactly as for ``target``; ``suffix`` is kept for
    compatibility and not needed. Folders left by a killed process are removed by :func:`remove_stale_temps`.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target.parent))
    except OSError as e:
        raise output_write_error(target, e) from None
    tmp_path = tmp_dir / target.name
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise output_write_error(target, e) from None
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete ``.radae-tmp-*`` folders under ``folder`` (left by a killed writer); returns how many.

    Only call this while holding the folder's run lock: a live writer's temp folder looks the same.
    """
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for d in sorted(folder.rglob(TEMP_PREFIX + "*")):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        elif d.is_file():  # left by replace_write_text
            d.unlink(missing_ok=True)
            n += 1
    return n


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def replace_write_text(target: str | os.PathLike, text: str) -> None:
    """Write-then-rename without fsync, for small per-item cache files whose reader validates them (a file lost or
    left empty by a power cut is recomputed, never half-read): a fsync per lesion cost ~20 ms on a busy disk."""
    target = Path(target)
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in WRITE_ERRNOS:
            raise output_write_error(target, e) from None
        raise


def _lock_holder(lock_path: Path) -> int | None:
    try:
        text = lock_path.read_text().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _take_over(run_dir: Path, lock_path: Path):
    """A fresh lock file (our pid, locked) renamed over ``lock_path`` if its recorded holder is dead, else None.
    Call with the guard held. Whatever still holds the old file (orphaned workers of a killed radae) keeps a lock
    on a file nobody opens any more."""
    holder = _lock_holder(lock_path)
    if holder is None or pid_alive(holder):
        return None
    fresh = run_dir / f".lock.{os.getpid()}"
    fh = open(fresh, "w+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.replace(fresh, lock_path)
    logger.warning("run folder %s: took over the lock of pid %s, which is no longer running", run_dir, holder)
    return fh


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Exclusive, non-blocking lock on ``<run_dir>/.lock``; a second radae on the same folder refuses.

    The holder writes its pid into the lock file while holding ``.lock.guard`` (briefly), so a recorded pid that is
    dead means the holder is gone: such a lock (a ``kill -9``-ed radae whose orphaned workers still hold the file)
    is taken over by replacing the lock file.
    """
    run_dir = ensure_dir(run_dir)
    lock_path = run_dir / ".lock"
    try:
        guard = open(run_dir / ".lock.guard", "a+")
        fh = open(lock_path, "a+")
    except OSError as e:
        raise OutputWriteError(f"run folder {run_dir}: cannot create lock file ({e.strerror}) -> check the folder is writable") from None
    try:
        with guard:
            fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fh.fileno()).st_ino != os.stat(lock_path).st_ino:  # replaced by a taker meanwhile
                    raise BlockingIOError
            except BlockingIOError:
                fresh = _take_over(run_dir, lock_path)
                if fresh is None:
                    holder = _lock_holder(lock_path)
                    raise RunLockedError(
                        f"run folder {run_dir}: another radae process is using it (lock {lock_path}"
                        f"{f', pid {holder}' if holder else ''}) -> wait for it or use another run name"
                    ) from None
                fh.close()
                fh = fresh
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(str(os.getpid()))
                fh.flush()
            except OSError as e:
                raise output_write_error(lock_path, e) from None
        HELD_LOCK_FDS.add(fh.fileno())
        yield
    finally:
        if not fh.closed:
            HELD_LOCK_FDS.discard(fh.fileno())
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()
