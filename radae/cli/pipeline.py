"""``radae run``, ``validate``, ``report`` and ``reference``: pipelines from their YAML (the runner), torchrun's DDP
pretraining included."""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from radae.util.errors import RadaeError
from radae.cli.app import QUIET_HELP, VERBOSE_HELP, fail, setup, app


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: key.path=value (YAML value)"),
    stages: Optional[str] = typer.Option(None, "--stages", help="comma-separated subset of stages to run"),
    force: bool = typer.Option(False, "--force", help="redo stages even if up to date"),
    resume: bool = typer.Option(False, "--resume", help="resume pretraining/extraction from checkpoints"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run a pipeline (only stages whose inputs changed). PIPELINE may also name a shipped pipeline (pipelines/demo.yaml
    or demo) from any folder; runs_dir (default runs/) is relative to the current folder."""
    from radae.config import load_pipeline
    from radae.runner import run_pipeline
    from radae.util.errors import RunInterrupted

    def _term(signum, frame):  # SIGTERM (a scheduler's kill) ends the run like Ctrl-C: the stage is marked interrupted
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        cfg = load_pipeline(pipeline, overrides=set_)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: the pretrain stage on every rank
            _run_distributed(cfg, stages, force=force, resume=resume, quiet=quiet, verbose=verbose)
            return
        setup(quiet, verbose, cfg.threads)
        ctx = run_pipeline(cfg, stages=stages.split(",") if stages else None, force=force, resume=resume, quiet=quiet)
    except (RunInterrupted, KeyboardInterrupt) as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage is marked interrupted: a further Ctrl-C keeps exit 130
        typer.echo(f"radae: interrupted: {e}" if isinstance(e, RunInterrupted) else "radae: interrupted", err=True)
        raise typer.Exit(code=130)
    except RadaeError as e:
        fail(e)
    ran, skipped = ctx.extra.get("ran", []), ctx.extra.get("skipped", [])
    typer.echo(f"run folder: {ctx.run_dir.resolve()}")
    typer.echo(f"stages run: {', '.join(ran) or 'none'}; up to date: {', '.join(skipped) or 'none'}")
    nfail = sum(1 for _ in open(ctx.run_dir / "failures.csv")) - 1 if (ctx.run_dir / "failures.csv").exists() else 0
    if nfail:
        typer.echo(f"failures: {nfail} (see {(ctx.run_dir / 'failures.csv').resolve()})")
    report = ctx.run_dir / "report" / "report.html"
    if report.exists():
        typer.echo(f"report: {report.resolve()}")


def _run_distributed(cfg, stages: str | None, force: bool, resume: bool, quiet: bool, verbose: bool) -> None:
    """``torchrun --nproc_per_node=K -m radae.cli run PIPELINE.yaml --stages pretrain``: DDP pretraining (gloo on CPU,
    NCCL on GPUs); rank 0 keeps the run folder, the other ranks log warnings only."""
    from radae.runner import run_pretrain_distributed
    from radae.train.distributed import process_group

    if stages != "pretrain":
        raise RadaeError("under torchrun only the pretrain stage runs on several processes -> add --stages pretrain "
                         "(run the other stages with a plain `radae run`)")
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.WARNING if quiet or rank else (logging.DEBUG if verbose else logging.INFO),
                        stream=sys.stderr, force=True, datefmt="%H:%M:%S",
                        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s")
    with process_group(cfg):
        run_pretrain_distributed(cfg, resume=resume, force=force, quiet=quiet)


@app.command()
def validate(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: key.path=value"),
) -> None:
    """Check the config and the manifest (no heavy work). Exits non-zero on any problem."""
    from radae.config import load_pipeline
    from radae.util.errors import IngestError
    from radae.data.sources import validated_manifest
    from radae.io.integrity import manifest_file_problems

    try:
        cfg = load_pipeline(pipeline, overrides=set_)
        df = validated_manifest(cfg)
        damaged = manifest_file_problems(df)
        if damaged:
            raise IngestError("\n".join(damaged))
        rcfg = cfg.extract.radiomics
        if "extract" in cfg.stages and rcfg.enabled:  # parameter files (bounded YAML) and one for every modality
            from radae.features.handcrafted import specs_for_modalities

            specs_for_modalities(df["modality"].unique(), params_path=rcfg.params, grid=rcfg.grid,
                                 image_types=rcfg.image_types, spacing_mm=cfg.preprocess.spacing_mm, strict=True)
    except RadaeError as e:
        fail(e)
    cohorts = ""
    if cfg.data.validation_manifest is not None:  # both manifests passed the same checks
        n = df.groupby(cfg.data.cohort_column)["patient_id"].nunique()
        cohorts = " (" + ", ".join(f"{k} {c}" for c, k in n.items()) + ")"
    typer.echo(f"ok: {pipeline}: {len(df)} lesions, {df['patient_id'].nunique()} patients{cohorts}, "
               f"modalities {sorted(df['modality'].unique())}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="run folder, e.g. runs/demo"),
    out: Optional[Path] = typer.Option(None, "--out", help="output folder (default RUN_DIR/report)"),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Rebuild a run's HTML report from its run folder, without recomputing anything."""
    from radae.report.build import build_report

    setup(False, False, torch_threads=False)
    try:
        if not run_dir.is_dir():
            raise RadaeError(f"run folder {run_dir} not found -> give the folder runs/<name> of a pipeline run")
        result = build_report(run_dir, out, title=title)
    except RadaeError as e:
        fail(e)
    typer.echo(f"report: {result.html_path.resolve()}")


@app.command()
def reference() -> None:
    """Print the pipeline YAML reference (every key, type and default) as Markdown; the README's table is this."""
    from radae.config.doc import markdown

    typer.echo(markdown())
