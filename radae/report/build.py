"""Build ``report/report.html`` (one self-contained file) and ``report/summary.json`` from a run folder.

Only files already in ``runs/<name>/`` are read, so the page can be rebuilt at any time without
recomputing (``radae report runs/<name>``). Figures are embedded as base64 PNGs and the
stylesheet is inline: the file opens offline and can be mailed to a co-author as is.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

import radae
from radae.util.fsutil import atomic_write_text
from radae.report.artifacts import RunFolder
from radae.report.blocks import Table
from radae.report.keys import KeyNumbers
from radae.report.learned_checks import banner_messages
from radae.report.sections.appendix import appendix_section
from radae.report.sections.context import Context
from radae.report.sections.data import data_section
from radae.report.sections.downstream import downstream_section
from radae.report.sections.external import external_section
from radae.report.sections.features import features_section
from radae.report.sections.ibsi import ibsi_section
from radae.report.sections.label_efficiency import label_efficiency_section
from radae.report.sections.latent import latent_section
from radae.report.sections.preprocess import preprocess_section
from radae.report.sections.pretrain import pretrain_section
from radae.report.sections.redundancy import redundancy_section
from radae.report.sections.robustness import robustness_section
from radae.report.sections.summary import summary_section

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class ReportResult:
    html_path: Path
    summary_path: Path
    summary: dict  # nested key numbers, as written to summary.json
    missing: dict[str, str]  # run-folder files the report wanted but could not read -> why


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("radae.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def rerun_command(run_dir: Path) -> str:
    return f"radae run {run_dir / 'config.resolved.yaml'}"


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, title: str | None = None,
                 max_rows: int = 50) -> ReportResult:
    """Render the report of ``run_dir`` into ``out_dir`` (default ``<run_dir>/report``)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    run = RunFolder(run_dir)
    cfg = run.yaml("config.resolved.yaml") or {}
    ctx = Context(run=run, keys=KeyNumbers(), cfg=cfg, max_rows=max_rows)
    name = cfg.get("name") or run_dir.name

    # Result sections first: the run summary quotes their headline numbers.
    body = {
        "data": data_section(ctx),
        "preprocess": preprocess_section(ctx),
        "pretrain": pretrain_section(ctx),
        "features": features_section(ctx),
        "latent": latent_section(ctx),
        "downstream": downstream_section(ctx),
        "label_efficiency": label_efficiency_section(ctx),
        "robustness": robustness_section(ctx),
        "redundancy": redundancy_section(ctx),
        "ibsi": ibsi_section(ctx),
        "external": external_section(ctx),
    }
    summary = summary_section(ctx)
    appendix = appendix_section(ctx, rerun_command(run_dir))
    read = sorted(run.inputs.items())
    appendix.add(Table(["file", "sha256"], [[rel, h] for rel, h in read],
                       "Run-folder files this page was built from (and only these), with their sha256.", collapsed=True))
    ordered = [summary, *body.values(), appendix]

    env = run.json("environment.json") or {}
    html = _environment().get_template(TEMPLATE).render(
        title=title or f"radae report: {name}",
        run_name=name,
        run_dir=str(run_dir),
        sections=ordered,
        generated_with=f"radae {radae.__version__}",
        date_utc=env.get("date_utc", "unknown"),
        git_commit=env.get("git_commit") or "unknown",
        missing=sorted(run.notes.items()),
        banners=banner_messages(ctx),
    )
    summary_doc = {"run": name, "numbers": ctx.keys.as_dict()}
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, summary_path = out_dir / "report.html", out_dir / "summary.json"
    atomic_write_text(summary_path, json.dumps(summary_doc, indent=1, sort_keys=True) + "\n")
    atomic_write_text(html_path, html)
    for path in (summary_path, html_path):  # temp files are created 0600; the report is meant to be shared
        path.chmod(0o666 & ~_umask())
    logger.info("report: %s (%d key numbers, %d inputs missing)", html_path, len(ctx.keys.flat()), len(run.notes))
    return ReportResult(html_path, summary_path, summary_doc, dict(run.notes))


__all__ = ["build_report", "ReportResult"]
