"""Progress bars (rich) that stay quiet in tests, CI logs and --quiet runs.

Bars are drawn only on a terminal, and never when the caller passes ``quiet``, when the CLI ran with ``--quiet``
(:func:`set_quiet`, process-wide) or when the environment sets ``RADAE_QUIET=1`` (for scripts and tests).
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_QUIET = [False]  # set by the CLI's --quiet for this process (a list: no `global` rebinding)


def set_quiet(flag: bool) -> None:
    """Turn progress bars off (``True``) for the rest of this process, as ``radae ... --quiet`` does."""
    _QUIET[0] = bool(flag)


def quiet_requested() -> bool:
    """Whether this process was asked for quiet output: :func:`set_quiet` or ``RADAE_QUIET=1``."""
    return _QUIET[0] or os.environ.get("RADAE_QUIET") == "1"


def bars_off(quiet: bool = False) -> bool:
    """Whether progress bars stay off: ``quiet``, :func:`quiet_requested` or no terminal on stderr."""
    return quiet or quiet_requested() or not sys.stderr.isatty()


def progress_iter(items: Iterable[T], total: int | None = None, desc: str = "", quiet: bool = False) -> Iterator[T]:
    if bars_off(quiet):
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as prog:
        task = prog.add_task(desc, total=total)
        for item in items:
            yield item
            prog.advance(task)


class StepLog:
    """``[i/n]`` progress lines with elapsed time and ETA, for loops whose items take seconds (benchmark fits)."""

    def __init__(self, total: int, what: str, logger=None):
        import logging
        import time

        self.total, self.what, self.done = max(1, int(total)), what, 0
        self.logger = logger or logging.getLogger("radae")
        self._clock = time.perf_counter
        self.t0 = self._clock()

    def step(self, label: str) -> None:
        """Log that ``label`` starts (item ``done + 1`` of ``total``), with the ETA from the items finished so far."""
        elapsed = self._clock() - self.t0
        eta = "" if self.done == 0 else f", ETA {_mmss(elapsed / self.done * (self.total - self.done))}"
        self.done += 1
        self.logger.info("%s [%d/%d] %s (%s elapsed%s)", self.what, self.done, self.total, label, _mmss(elapsed), eta)


def _mmss(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"
