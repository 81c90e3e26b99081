"""report: the self-contained HTML report and its key numbers (report/report.html, report/summary.json).

Reads only the run folder. Its stage key includes every upstream stage's key, so it is rebuilt
whenever anything it reports on changed, even in pipelines that skip some stages.
"""
from __future__ import annotations

import logging

from radae.report.build import build_report
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.report
    result = build_report(ctx.run_dir, ctx.stage_dir(), title=cfg.title, max_rows=cfg.max_rows)
    if result.missing:
        logger.info("report: %d run-folder inputs absent (%s); their sections say so", len(result.missing),
                    ", ".join(sorted(result.missing)))
