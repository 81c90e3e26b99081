"""Progress bars (rich) that stay quiet in tests, CI logs and --quiet runs."""
from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_iter(items: Iterable[T], total: int | None = None, desc: str = "", quiet: bool = False) -> Iterator[T]:
    if quiet or os.environ.get("RADAE_QUIET") == "1" or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as prog:
        task = prog.add_task(desc, total=total)
        for item in items:
            yield item
            prog.advance(task)
