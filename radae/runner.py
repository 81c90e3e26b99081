"""Stage registry, run folder, content hashes, and skipping what is up to date.

A run folder ``<runs_dir>/<name>/`` holds ``config.resolved.yaml``, ``environment.json``, one
sub-folder per stage, and ``failures.csv`` (all stages' per-case failures). Each stage folder
gets ``_stage.json`` with the stage's key: the hash of its config section, of the upstream
stages' keys and (for ingest) of the input files. A stage whose key is unchanged and whose
``_stage.json`` says ``done`` is skipped; ``--force`` redoes it.

Stages register themselves with :func:`stage`; the order of ``config.STAGES`` is the pipeline.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from radae.config import STAGES, PipelineConfig, stable_hash
from radae.util.csvsafe import to_csv_text
from radae.util.errors import RadaeError, RunInterrupted, RunLockedError
from radae.util.fsutil import WRITE_ERRNOS, atomic_write_text, ensure_dir, output_write_error, remove_stale_temps, run_lock

logger = logging.getLogger(__name__)

FAILURE_COLUMNS = ["case_id", "stage", "file", "message"]


@dataclass
class StageSpec:
    name: str
    fn: Callable[["RunContext"], None]
    upstream: tuple[str, ...]
    sections: tuple[str, ...]  # config sections that affect this stage


STAGE_REGISTRY: dict[str, StageSpec] = {}


def stage(name: str, upstream: tuple[str, ...] = (), sections: tuple[str, ...] = ()):
    """Register a stage function ``fn(ctx)``. ``sections`` defaults to ``(name,)``."""
    assert name in STAGES, name

    def deco(fn):
        STAGE_REGISTRY[name] = StageSpec(name, fn, upstream, sections or (name,))
        return fn

    return deco


@dataclass
class RunContext:
    cfg: PipelineConfig
    run_dir: Path
    force: bool = False
    resume: bool = False
    quiet: bool = False
    stage_name: str = ""
    failures: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # e.g. stage-to-stage in-memory hints

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def stage_dir(self, name: str | None = None) -> Path:
        return ensure_dir(self.run_dir / (name or self.stage_name))

    def fail(self, case_id: str | None, message: str, file: str | os.PathLike | None = None) -> None:
        """Record a per-case failure (goes to <stage>/failures.csv and the run's failures.csv)."""
        prefix = f"case {case_id}: "
        logger.warning("%s: %s%s", self.stage_name, "" if message.startswith(prefix) else prefix, message)
        self.failures.append(
            {"case_id": case_id, "stage": self.stage_name, "file": "" if file is None else str(file), "message": message}
        )

    @property
    def cache_dir(self) -> Path:
        d = self.cfg.preprocess.cache_dir or (self.cfg.runs_dir / "cache")
        return ensure_dir(Path(d).resolve())


def _ensure_stages_imported() -> None:
    # Importing registers the stages; kept here so `import radae` has no side effects.
    import importlib

    for name in STAGES:
        importlib.import_module(f"radae.stages.{name}")


def stage_key(ctx: RunContext, spec: StageSpec, keys: dict[str, str]) -> str:
    parts = {s: ctx.cfg.section_hash(s) for s in spec.sections}
    parts["seed"] = ctx.cfg.seed
    parts["upstream"] = {u: keys.get(u) for u in spec.upstream}
    if spec.name == "ingest":
        from radae.data.sources import input_fingerprint

        parts["inputs"] = input_fingerprint(ctx.cfg)
    return stable_hash(parts)


def _read_stage_meta(d: Path) -> dict:
    p = d / "_stage.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _write_failures(ctx: RunContext, name: str) -> None:
    d = ctx.stage_dir(name)
    df = pd.DataFrame(ctx.failures, columns=FAILURE_COLUMNS)
    atomic_write_text(d / "failures.csv", to_csv_text(df))
    # run-level failures.csv = concatenation of every stage's, in pipeline order
    frames = []
    for s in STAGES:
        f = ctx.run_dir / s / "failures.csv"
        if f.exists():
            frames.append(pd.read_csv(f, dtype=str, keep_default_na=False))
    allf = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FAILURE_COLUMNS)
    atomic_write_text(ctx.run_dir / "failures.csv", to_csv_text(allf))


def write_run_header(ctx: RunContext, device: bool = True) -> None:
    """config.resolved.yaml and environment.json (``device=False``: without torch's device and thread facts, which
    import torch; for ``radae features`` without a model)."""
    from radae.util.environment import environment_info

    cfg_dump = ctx.cfg.model_dump(mode="json")
    atomic_write_text(ctx.run_dir / "config.resolved.yaml", yaml.safe_dump(cfg_dump, sort_keys=False))
    atomic_write_text(ctx.run_dir / "environment.json", json.dumps(environment_info(device=device), indent=2, default=str))


def run_pipeline(
    cfg: PipelineConfig,
    stages: list[str] | None = None,
    force: bool = False,
    resume: bool = False,
    quiet: bool = False,
) -> RunContext:
    """Run the configured stages in order, skipping up-to-date ones. Returns the context."""
    _ensure_stages_imported()
    run_dir = cfg.run_dir
    wanted = [s for s in STAGES if s in cfg.stages and (stages is None or s in stages)]
    unknown = [s for s in (stages or []) if s not in STAGES]
    if unknown:
        raise RadaeError(f"--stages: unknown stage(s) {unknown}; known: {', '.join(STAGES)}")
    absent = [s for s in (stages or []) if s not in cfg.stages]
    if absent:
        raise RadaeError(f"--stages: {absent} not in this pipeline's stages {list(cfg.stages)} -> add them to 'stages' in the YAML")
    ctx = RunContext(cfg=cfg, run_dir=run_dir, force=force, resume=resume, quiet=quiet)
    with run_lock(run_dir):
        if remove_stale_temps(run_dir):
            logger.info("removed temp files left by an interrupted run in %s", run_dir)
        try:
            _run_stages(ctx, wanted)
        except OSError as e:
            if e.errno in WRITE_ERRNOS and _is_output(e.filename, ctx):
                raise output_write_error(run_dir, e) from None
            raise
    return ctx


def _is_output(filename, ctx: RunContext) -> bool:
    """Whether an OSError's file is one radae writes (run folder, runs folder, cache), not an input."""
    if not filename:
        return True
    p = Path(str(filename)).resolve()
    roots = [ctx.run_dir, ctx.cfg.runs_dir, ctx.cfg.preprocess.cache_dir or ctx.cfg.runs_dir]
    return any(p.is_relative_to(Path(r).resolve()) for r in roots)


def _interrupted(ctx: RunContext, name: str, key: str, elapsed: float) -> RunInterrupted:
    """Mark stage ``name`` interrupted (with the failures recorded so far) and return the error to raise."""
    msg = (f"stage {name} interrupted after {elapsed:.1f} s; its outputs are incomplete and were not used -> run "
           "again to redo it (pretrain and extract continue from their checkpoints / partial results with --resume)")
    with contextlib.suppress(OSError, RadaeError):
        _write_failures(ctx, name)
    with contextlib.suppress(OSError, RadaeError):
        atomic_write_text(ctx.run_dir / name / "_stage.json", json.dumps(
            {"status": "interrupted", "key": key, "seconds": round(elapsed, 3), "message": msg}))
    logger.error("%s", msg)
    return RunInterrupted(msg)


def _run_stages(ctx: RunContext, wanted: list[str]) -> None:
    """Write the run header, then each wanted stage whose key changed (or all with --force), in pipeline order."""
    cfg, run_dir, force = ctx.cfg, ctx.run_dir, ctx.force
    write_run_header(ctx)
    keys: dict[str, str] = {}
    for name in STAGES:
        if name not in cfg.stages or name not in STAGE_REGISTRY:
            continue
        spec = STAGE_REGISTRY[name]
        ctx.stage_name = name
        key = stage_key(ctx, spec, keys)
        keys[name] = key
        sdir = run_dir / name
        meta = _read_stage_meta(sdir)
        if name not in wanted:
            continue
        if not force and meta.get("status") == "done" and meta.get("key") == key:
            logger.info("stage %s: up to date, skipped", name)
            ctx.extra.setdefault("skipped", []).append(name)
            continue
        metas = {u: _read_stage_meta(run_dir / u) for u in spec.upstream if u in cfg.stages}
        missing = [u for u, m in metas.items() if m.get("status") != "done"]
        if missing:
            raise RadaeError(f"stage {name}: upstream stage(s) {missing} have not completed in {run_dir}; run them first")
        stale = [u for u, m in metas.items() if u in keys and m.get("key") != keys[u]]
        if stale:
            raise RadaeError(f"stage {name}: upstream stage(s) {stale} in {run_dir} are out of date (their inputs or config "
                             f"changed) -> run them too (leave out --stages, or add {','.join(stale)})")
        ensure_dir(sdir)
        atomic_write_text(sdir / "_stage.json", json.dumps({"status": "running", "key": key, "started": time.time()}))
        ctx.failures = []
        t0 = time.perf_counter()
        logger.info("stage %s: running", name)
        try:
            spec.fn(ctx)
        except KeyboardInterrupt:
            raise _interrupted(ctx, name, key, time.perf_counter() - t0) from None
        elapsed = time.perf_counter() - t0
        _write_failures(ctx, name)
        atomic_write_text(
            sdir / "_stage.json",
            json.dumps({"status": "done", "key": key, "seconds": round(elapsed, 3), "failures": len(ctx.failures)}),
        )
        ctx.extra.setdefault("ran", []).append(name)
        logger.info("stage %s: done in %.1fs (%d failures)", name, elapsed, len(ctx.failures))


__all__ = ["stage", "RunContext", "run_pipeline", "STAGE_REGISTRY", "RunLockedError"]
