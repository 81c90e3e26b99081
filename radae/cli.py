"""The ``radae`` command line: parses arguments, configures logging/threads, calls the runner. Nothing else."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from radae.errors import RadaeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="radae: radiomics with 3D autoencoders, benchmarked honestly.")
manifest_app = typer.Typer(no_args_is_help=True, help="Build manifests.")
import_app = typer.Typer(no_args_is_help=True, help="Import datasets into NIfTI + manifest.")
app.add_typer(manifest_app, name="manifest")
app.add_typer(import_app, name="import")

logger = logging.getLogger("radae")


def _setup(quiet: bool, verbose: bool, threads: int | None = None) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    for noisy in ("radiomics", "distributed", "matplotlib", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    if quiet:
        os.environ["RADAE_QUIET"] = "1"
    n = threads or int(os.environ.get("RADAE_THREADS", "0")) or min(os.cpu_count() or 1, 8)
    import torch

    torch.set_num_threads(n)


def _fail(e: Exception) -> None:
    typer.echo(f"radae: error: {e}", err=True)
    raise typer.Exit(code=2)


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: key.path=value (YAML value)"),
    stages: Optional[str] = typer.Option(None, "--stages", help="comma-separated subset of stages to run"),
    force: bool = typer.Option(False, "--force", help="redo stages even if up to date"),
    resume: bool = typer.Option(False, "--resume", help="resume pretraining/extraction from checkpoints"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a pipeline (only stages whose inputs changed)."""
    from radae.config import load_pipeline
    from radae.runner import run_pipeline

    from radae.errors import RunInterrupted

    def _term(signum, frame):  # SIGTERM (a scheduler's kill) ends the run like Ctrl-C: the stage is marked interrupted
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        cfg = load_pipeline(pipeline, overrides=set_)
        _setup(quiet, verbose, cfg.threads)
        ctx = run_pipeline(cfg, stages=stages.split(",") if stages else None, force=force, resume=resume, quiet=quiet)
    except RunInterrupted as e:
        typer.echo(f"radae: interrupted: {e}", err=True)
        raise typer.Exit(code=130)
    except KeyboardInterrupt:
        typer.echo("radae: interrupted", err=True)
        raise typer.Exit(code=130)
    except RadaeError as e:
        _fail(e)
    ran, skipped = ctx.extra.get("ran", []), ctx.extra.get("skipped", [])
    typer.echo(f"run folder: {ctx.run_dir.resolve()}")
    typer.echo(f"stages run: {', '.join(ran) or 'none'}; up to date: {', '.join(skipped) or 'none'}")
    nfail = sum(1 for _ in open(ctx.run_dir / "failures.csv")) - 1 if (ctx.run_dir / "failures.csv").exists() else 0
    if nfail:
        typer.echo(f"failures: {nfail} (see {(ctx.run_dir / 'failures.csv').resolve()})")
    report = ctx.run_dir / "report" / "report.html"
    if report.exists():
        typer.echo(f"report: {report.resolve()}")


@app.command()
def validate(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: key.path=value"),
) -> None:
    """Check the config and the manifest (no heavy work). Exits non-zero on any problem."""
    from radae.config import load_pipeline
    from radae.errors import IngestError
    from radae.ingest import validated_manifest
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
        _fail(e)
    typer.echo(f"ok: {pipeline}: {len(df)} lesions, {df['patient_id'].nunique()} patients, "
               f"modalities {sorted(df['modality'].unique())}")


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="output folder"),
    cases: int = typer.Option(40, "--cases", min=4, help="labeled patients"),
    seed: int = typer.Option(0, "--seed"),
    size: int = typer.Option(48, "--size", min=24, max=256, help="voxels per axis"),
    unlabeled: Optional[int] = typer.Option(None, "--unlabeled", help="extra unlabeled patients (default cases/2)"),
) -> None:
    """Write the synthetic cohort (NIfTI + manifest + ground truth)."""
    from radae.synth import generate_cohort

    _setup(False, False)
    df = generate_cohort(out, cases=cases, seed=seed, size_vox=size, unlabeled=unlabeled)
    typer.echo(f"wrote {len(df)} lesions to {out.resolve()} (manifest.csv, truth.csv)")


@app.command()
def info() -> None:
    """Versions, device and threads."""
    from radae.config import data_root
    from radae.environment import environment_info

    env = environment_info()
    env["data_root"] = str(data_root())
    env["data_root_present"] = (data_root() / "README.md").exists()
    typer.echo(json.dumps(env, indent=2, default=str))


@manifest_app.command("scan")
def manifest_scan(
    folder: Path = typer.Argument(..., help="folder of NIfTI image/mask pairs or DICOM studies"),
    out: Path = typer.Option(..., "--out", help="manifest CSV to write"),
) -> None:
    """Build a manifest from a folder."""
    from radae.manifest_scan import scan_folder

    try:
        df = scan_folder(folder, out)
    except RadaeError as e:
        _fail(e)
    typer.echo(f"wrote {len(df)} rows to {out}")


@import_app.command("npz")
def import_npz_cmd(
    npz: Path = typer.Argument(..., help="MedMNIST-style .npz (<split>_images, <split>_labels)"),
    split: str = typer.Option("train", "--split"),
    out: Path = typer.Option(..., "--out"),
    spacing: str = typer.Option("1,1,1", "--spacing", help="voxel spacing x,y,z in mm"),
    mask_rule: str = typer.Option("threshold", "--mask-rule", help="threshold | cube"),
) -> None:
    """Turn MedMNIST-style arrays into NIfTI volumes, masks and a manifest."""
    from radae.importers import import_npz

    try:
        sp = tuple(float(s) for s in spacing.split(","))
        if len(sp) != 3 or min(sp) <= 0:
            raise RadaeError(f"--spacing {spacing!r}: expected three positive numbers x,y,z")
        df = import_npz(npz, split, out, sp, mask_rule)
    except ValueError:
        _fail(RadaeError(f"--spacing {spacing!r}: expected three numbers x,y,z"))
    except RadaeError as e:
        _fail(e)
    typer.echo(f"wrote {len(df)} cases to {out}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
