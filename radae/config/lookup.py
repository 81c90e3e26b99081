"""Where a pipeline YAML named on the command line is found, so the README's commands work from any folder.

A path that exists (relative to the current folder, or absolute) is used as given. A relative path that does not
exist there is looked up in the radae checkout the package was installed from (``pipelines/demo.yaml`` from any
folder), and a bare name (``demo``) as ``pipelines/<name>.yaml`` there. Everything *inside* the YAML (manifest,
parameter files, ...) resolves against the YAML's own folder; ``runs_dir`` resolves against the current folder,
so a run started elsewhere writes ``./runs/<name>/`` there.
"""
from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

#: the checkout radae runs from (has pipelines/ when installed editable, as the Makefile does)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shipped_pipelines() -> Path:
    return PROJECT_ROOT / "pipelines"


def find_pipeline(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped pipeline it names; unchanged when neither exists (caller reports)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    candidates = [PROJECT_ROOT / p]
    if len(p.parts) == 1:
        candidates += [shipped_pipelines() / p, shipped_pipelines() / f"{p}.yaml"]
    for c in candidates:
        if c.is_file():
            logger.info("pipeline %s: not in %s, using the shipped %s", path, Path.cwd(), c)
            return c
    return p
