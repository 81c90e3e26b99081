"""The pipeline: one explicit table of stages, their keys, and skipping what is up to date.

:data:`STAGE_REGISTRY` lists every stage in pipeline order with the function that runs it, its upstream stages and
the config sections its key hashes. Each stage folder gets ``_stage.json`` with the stage's key: the hash of its
config sections, of the upstream stages' keys and (for ingest) of the input files. A stage whose key is unchanged and
whose ``_stage.json`` says ``done`` is skipped; ``--force`` redoes it. The run folder itself (paths, failures, the
run header) is :mod:`radae.runfolder`.

Only :mod:`radae.cli` imports this module; the stages import :mod:`radae.runfolder`, never the runner.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from radae.config import STAGES, PipelineConfig, stable_hash
from radae.runfolder import FAILURE_COLUMNS, RunContext, read_stage_meta, write_failures, write_run_header
from radae.stages import benchmark, extract, ingest, preprocess, pretrain, report
from radae.util.errors import RadaeError, RunInterrupted, RunLockedError, TrainError
from radae.util.fsutil import WRITE_ERRNOS, atomic_write_text, ensure_dir, output_write_error, remove_stale_temps, run_lock

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class StageSpec:
    name: str
    fn: Callable[[RunContext], None]
    upstream: tuple[str, ...]
    sections: tuple[str, ...]  # config sections that affect this stage


#: every stage, in pipeline order (the order of ``config.STAGES``, checked below)
STAGE_REGISTRY: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("ingest", ingest.run, (), ("data",)),
    StageSpec("preprocess", preprocess.run, ("ingest",), ("preprocess",)),
    StageSpec("pretrain", pretrain.run, ("preprocess",), ("pretrain",)),
    StageSpec("extract", extract.run, ("ingest", "preprocess", "pretrain"), ("extract",)),
    StageSpec("benchmark", benchmark.run, ("ingest", "preprocess", "extract"), ("benchmark", "extract")),
    # the report's key includes every upstream stage's, so it is rebuilt whenever anything it reports on changed
    StageSpec("report", report.run, ("ingest", "preprocess", "pretrain", "extract", "benchmark"), ("report",)),
)}
if tuple(STAGE_REGISTRY) != STAGES:  # config validates `stages:` against config.STAGES; both must be one list
    raise RuntimeError(f"runner.STAGE_REGISTRY {tuple(STAGE_REGISTRY)} differs from config.STAGES {STAGES}")


def stage_key(ctx: RunContext, spec: StageSpec, keys: dict[str, str]) -> str:
    parts = {s: ctx.cfg.section_hash(s) for s in spec.sections}
    parts["seed"] = ctx.cfg.seed
    parts["on_error"] = ctx.cfg.on_error  # whether a broken case stops the stage (skip | raise)
    parts["upstream"] = {u: keys.get(u) for u in spec.upstream}
    if spec.name == "ingest":
        from radae.data.sources import input_fingerprint

        parts["inputs"] = input_fingerprint(ctx.cfg)
    return stable_hash(parts)


def run_pipeline(
    cfg: PipelineConfig,
    stages: list[str] | None = None,
    force: bool = False,
    resume: bool = False,
    quiet: bool = False,
) -> RunContext:
    """Run the configured stages in order, skipping up-to-date ones. Returns the context."""
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
        write_failures(ctx, name)
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
        if name not in cfg.stages:
            continue
        spec = STAGE_REGISTRY[name]
        ctx.stage_name = name
        key = stage_key(ctx, spec, keys)
        keys[name] = key
        sdir = run_dir / name
        meta = read_stage_meta(sdir)
        if name not in wanted:
            continue
        if not force and meta.get("status") == "done" and meta.get("key") == key:
            logger.info("stage %s: up to date, skipped", name)
            ctx.extra.setdefault("skipped", []).append(name)
            continue
        metas = {u: read_stage_meta(run_dir / u) for u in spec.upstream if u in cfg.stages}
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
        write_failures(ctx, name)
        atomic_write_text(
            sdir / "_stage.json",
            json.dumps({"status": "done", "key": key, "seconds": round(elapsed, 3), "failures": len(ctx.failures)}),
        )
        ctx.extra.setdefault("ran", []).append(name)
        logger.info("stage %s: done in %.1fs (%d failures)", name, elapsed, len(ctx.failures))


# ----------------------------------------------------------------------------- torchrun: the pretrain stage on K ranks
def _stage_keys(ctx: RunContext, upto: str) -> dict[str, str]:
    """Keys of the configured stages up to and including ``upto`` (pipeline order)."""
    keys: dict[str, str] = {}
    for name in STAGES:
        if name in ctx.cfg.stages:
            keys[name] = stage_key(ctx, STAGE_REGISTRY[name], keys)
        if name == upto:
            return keys
    return keys


def run_pretrain_distributed(cfg: PipelineConfig, resume: bool = False, force: bool = False, quiet: bool = False) -> RunContext:
    """The pretrain stage under torchrun (``torchrun --nproc_per_node=K -m radae.cli run PIPELINE.yaml --stages
    pretrain``): rank 0 locks the run folder and keeps ``_stage.json`` as :func:`run_pipeline` does; every rank trains."""
    import torch.distributed as dist

    from radae.train import dist_info, run_training

    di = dist_info()
    run_dir = cfg.run_dir
    if "pretrain" not in cfg.stages:
        raise TrainError("pretrain is not in this pipeline's stages -> add it to 'stages'")
    ctx = RunContext(cfg=cfg, run_dir=run_dir, force=force, resume=resume, quiet=quiet, stage_name="pretrain")
    with contextlib.ExitStack() as stack:
        verdict, key = ["run", ""], ""
        if di.is_main:
            try:
                stack.enter_context(run_lock(run_dir))
                key = _stage_keys(ctx, "pretrain")["pretrain"]
                if read_stage_meta(run_dir / "preprocess").get("status") != "done":
                    raise TrainError(f"stage pretrain: preprocess has not completed in {run_dir}; run `radae run` first")
                meta = read_stage_meta(run_dir / "pretrain")
                if not force and meta.get("status") == "done" and meta.get("key") == key:
                    verdict = ["skip", ""]
                else:
                    ctx.stage_dir("pretrain")
                    atomic_write_text(run_dir / "pretrain" / "_stage.json",
                                      json.dumps({"status": "running", "key": key, "started": time.time()}))
            except RadaeError as e:
                verdict = ["error", str(e)]
        if di.world > 1:
            dist.broadcast_object_list(verdict, src=0)
        if verdict[0] == "error":
            raise TrainError(verdict[1])
        if verdict[0] == "skip":
            logger.info("stage pretrain: up to date, skipped")
            ctx.extra.setdefault("skipped", []).append("pretrain")
            return ctx
        t0 = time.perf_counter()
        run_training(cfg, run_dir, resume=resume, fail=ctx.fail, quiet=quiet)
        if di.is_main:
            write_failures(ctx, "pretrain")
            atomic_write_text(run_dir / "pretrain" / "_stage.json", json.dumps(
                {"status": "done", "key": key, "seconds": round(time.perf_counter() - t0, 3), "failures": len(ctx.failures)}))
        ctx.extra.setdefault("ran", []).append("pretrain")
        return ctx


__all__ = ["RunContext", "run_pipeline", "run_pretrain_distributed", "STAGE_REGISTRY", "FAILURE_COLUMNS", "RunLockedError"]
