"""Pretraining progress: a bar on a terminal (step/steps, epoch, loss, patches/s, ETA), log lines otherwise.

:class:`TrainProgress` is called from two places in :func:`radae.train.run_training`: :meth:`advance` after each
optimiser step and :meth:`report` at each ``log_every`` point. On a TTY (stderr, not ``--quiet``, not
``RADAE_QUIET``, :func:`radae.util.progress.quiet_requested`) the rich bar replaces the per-window log lines; in logs and CI each window is one INFO line, with
the ETA from the steps/s since the start of this run.
"""
from __future__ import annotations

import logging
import sys
import time

from radae.util.progress import quiet_requested

logger = logging.getLogger("radae.train")


def _eta(seconds: float) -> str:
    if not seconds == seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainProgress:
    def __init__(self, total_steps: int, start_step: int = 0, enabled: bool = True, quiet: bool = False,
                 tty: bool | None = None):
        self.total, self.start = int(total_steps), int(start_step)
        self.enabled = enabled and not quiet
        tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        self.t0 = time.perf_counter()
        if self.enabled and tty and not quiet_requested():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            self.bar.start()
            self.task = self.bar.add_task("pretrain", total=self.total, completed=self.start, info="")

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step)

    def eta_s(self, step: int) -> float:
        done = step - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        return (self.total - step) / rate if rate > 0 else float("inf")

    def report(self, step: int, epoch: float, loss: float, patches_per_s: float, data_wait: float, val: dict | None = None) -> None:
        """One window: the bar's text on a TTY, else one log line."""
        if not self.enabled:
            return
        val_text = (f", val loss {val['loss']:.4g}, PSNR {val['psnr_noisy']:.2f} -> {val['psnr_recon']:.2f} dB"
                    if val else "")
        if self.bar is not None:
            self.bar.update(self.task, completed=step,
                            info=f"epoch {epoch:.2f} loss {loss:.4g} {patches_per_s:.1f} patches/s{val_text}")
            return
        logger.info("pretrain: step %d/%d (epoch %.2f) loss %.4g, %.1f patches/s, data wait %.0f%%, ETA %s%s", step,
                    self.total, epoch, loss, patches_per_s, 100 * data_wait, _eta(self.eta_s(step)), val_text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def fmt(value, spec: str = ".4g") -> str:
    """A float for a log line (``-`` when absent)."""
    return "-" if value is None else format(float(value), spec)
