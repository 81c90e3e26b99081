"""The ``radae`` command line, radae's only entry point: parses arguments, configures logging and threads, calls
the runner or the library. ``python -m radae.cli`` is the same (torchrun uses it)."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from radae.util.errors import RadaeError

# pydantic scans every installed package's entry points for plugins (30 ms of each command's start-up); radae uses none
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # a user's own setting wins

_HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=_HELP,
                  help="radae: radiomics with 3D autoencoders, benchmarked honestly. `radae COMMAND -h` for a command's options.")
manifest_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="Build manifests.")
import_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="Import datasets into NIfTI + manifest.")
app.add_typer(manifest_app, name="manifest")
app.add_typer(import_app, name="import")

logger = logging.getLogger("radae")
QUIET_HELP = "only warnings and errors (no progress bars, no per-stage lines)"
VERBOSE_HELP = "debug messages too, and PyRadiomics' / Dask's own INFO lines"


def _version(value: bool) -> None:
    if value:
        from radae import __version__
        typer.echo(f"radae {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print radae's version and exit")) -> None:
    """radae: radiomics with 3D autoencoders, benchmarked honestly."""


def _setup(quiet: bool, verbose: bool, threads: int | None = None, torch_threads: bool = True) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    for noisy in ("radiomics", "distributed", "matplotlib", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    from radae.util.progress import set_quiet
    from radae.util.threads import configure_torch, passive_openmp
    set_quiet(quiet)
    if torch_threads:
        configure_torch(threads)  # free cores only, passive OpenMP waiting (radae.util.threads)
    else:
        passive_openmp()


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
        _setup(quiet, verbose, cfg.threads)
        ctx = run_pipeline(cfg, stages=stages.split(",") if stages else None, force=force, resume=resume, quiet=quiet)
    except (RunInterrupted, KeyboardInterrupt) as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage is marked interrupted: a further Ctrl-C keeps exit 130
        typer.echo(f"radae: interrupted: {e}" if isinstance(e, RunInterrupted) else "radae: interrupted", err=True)
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
        _fail(e)
    cohorts = ""
    if cfg.data.validation_manifest is not None:  # both manifests passed the same checks
        n = df.groupby(cfg.data.cohort_column)["patient_id"].nunique()
        cohorts = " (" + ", ".join(f"{k} {c}" for c, k in n.items()) + ")"
    typer.echo(f"ok: {pipeline}: {len(df)} lesions, {df['patient_id'].nunique()} patients{cohorts}, "
               f"modalities {sorted(df['modality'].unique())}")


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="output folder"),
    cases: int = typer.Option(40, "--cases", min=4, help="labeled patients"),
    seed: int = typer.Option(0, "--seed"),
    size: int = typer.Option(48, "--size", min=24, max=256, help="voxels per axis"),
    unlabeled: Optional[int] = typer.Option(None, "--unlabeled", help="extra unlabeled patients (default cases/2)"),
    sites: int = typer.Option(1, "--sites", min=1, max=8, help="> 1: a site column with a planted scanner effect, and cohorts A/B"),
) -> None:
    """Write the synthetic cohort (NIfTI + manifest + ground truth)."""
    from radae.data.synth import generate_cohort
    _setup(False, False)
    df = generate_cohort(out, cases=cases, seed=seed, size_vox=size, unlabeled=unlabeled, sites=sites)
    typer.echo(f"wrote {len(df)} lesions to {out.resolve()} (manifest.csv, truth.csv)")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="a saved model: runs/<name>/benchmark/models/<task>__<set>__<model>.joblib"),
    features: Path = typer.Option(..., "--features", help="feature table (Parquet): case_id, patient_id and the model's input columns"),
    out: Optional[Path] = typer.Option(None, "--out", help="predictions CSV to write (default: stdout)"),
) -> None:
    """Apply a locked model to a new feature table (schema and version checked first)."""
    from radae.evaluate.locked_model import load_model, predict_table
    from radae.features.table import read_provenance

    try:
        bundle = load_model(model)
        try:
            import pandas as pd

            table, prov = pd.read_parquet(features), read_provenance(features)
        except (OSError, ValueError) as e:
            raise RadaeError(f"file {features}: cannot read the feature table ({type(e).__name__}: {e})") from None
        pred = predict_table(bundle, table, prov, str(features))
    except RadaeError as e:
        _fail(e)
    text = pred.to_csv(index=False, float_format="%.17g")  # round-trips every double exactly
    if out is None:
        typer.echo(text, nl=False)
    else:
        from radae.util.fsutil import atomic_write_text
        atomic_write_text(out, text)
        typer.echo(f"wrote {len(pred)} predictions ({bundle['card']['task']}: {'P(y=1)' if bundle['card']['task'] == 'classification' else 'risk'}) to {out}")


@app.command()
def info() -> None:
    """Versions, device and threads."""
    from radae.config import data_root
    from radae.util.environment import environment_info

    env = environment_info()
    env["data_root"] = str(data_root())
    env["data_root_present"] = (data_root() / "README.md").exists()
    typer.echo(json.dumps(env, indent=2, default=str))


@app.command()
def features(
    image: Optional[Path] = typer.Argument(None, help="image (NIfTI/NRRD/MHA file or DICOM series folder)"),
    mask: Optional[Path] = typer.Argument(None, help="mask (label image, DICOM SEG or RTSTRUCT)"),
    params: Optional[Path] = typer.Option(None, "--params", "-p", help="PyRadiomics parameter file (default: radae's "
                                          "shipped file for the modality, Original features only)"),
    label: str = typer.Option("1", "--label", "-l", help="mask label value (ROI name for RTSTRUCT); single lesion only"),
    modality: str = typer.Option("CT", "--modality", help="CT, MR or PET: picks the shipped parameter file; single lesion only"),
    image_types: Optional[str] = typer.Option(None, "--image-types", help="comma list of Original,LoG,Wavelet "
                                              "(default: the --params file's, or Original)"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="radae manifest (CSV/Parquet): every row"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes (with --manifest)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="features CSV to write (with --manifest)"),
    model: Optional[Path] = typer.Option(None, "--model", help="a radae pretrain/model.pt: learned features too (with --manifest)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """PyRadiomics features without a pipeline: `radae features IMAGE MASK` prints one CSV row;
    `radae features --manifest cases.csv --jobs N --out features.csv` writes the extract stage's tables."""
    types = tuple(t.strip() for t in image_types.split(",") if t.strip()) if image_types else None
    pre = None
    try:
        if manifest is not None and image is None and out is not None and model is None:
            from radae.features.prefetch import start  # workers start on the lesions before pandas is imported

            _setup(quiet, verbose, torch_threads=False)
            pre = start(manifest, out, params=params, image_types=types, jobs=jobs)
        from radae.features import standalone

        if manifest is None:
            if image is None or mask is None:
                raise RadaeError("give IMAGE and MASK, or --manifest cases.csv --out features.csv")
            _setup(True, verbose, torch_threads=False)
            feats = standalone.one_lesion(image, mask, params=params, label=label, modality=modality, image_types=types)
            import csv
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(["image", "mask", *feats])
            w.writerow([str(image), str(mask), *(repr(float(v)) for v in feats.values())])
            return
        if image is not None or mask is not None:
            raise RadaeError("--manifest: give either IMAGE MASK or --manifest, not both")
        if out is None:
            raise RadaeError("--manifest needs --out features.csv")
        _setup(quiet, verbose, torch_threads=model is not None)
        stage_fns = {"ingest": _ingest_stage, "preprocess": _preprocess_stage}
        res = standalone.manifest_features(manifest, out, stage_fns, params=params, jobs=jobs, model=model, image_types=types,
                                           quiet=quiet, prefetch=pre)
    except RadaeError as e:
        _fail(e)
    finally:
        if pre is not None:
            pre.close()
    s = res["summary"]
    parts = [f"{k} {v['extracted']}/{v['lesions']} lesions" for k, v in s.items() if isinstance(v, dict)]
    typer.echo(f"wrote {res['out']} ({', '.join(parts)}); tables, provenance and failures.csv in {res['work'] / 'extract'}")
    if res["failures"]:
        typer.echo(f"failures: {res['failures']} (see {res['work'] / 'failures.csv'})")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="run folder, e.g. runs/demo"),
    out: Optional[Path] = typer.Option(None, "--out", help="output folder (default RUN_DIR/report)"),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Rebuild a run's HTML report from its run folder, without recomputing anything."""
    from radae.report.build import build_report
    _setup(False, False, torch_threads=False)
    try:
        if not run_dir.is_dir():
            raise RadaeError(f"run folder {run_dir} not found -> give the folder runs/<name> of a pipeline run")
        result = build_report(run_dir, out, title=title)
    except RadaeError as e:
        _fail(e)
    typer.echo(f"report: {result.html_path.resolve()}")


@app.command()
def ibsi(
    out: Path = typer.Option(..., "--out", help="CSV file to write (radae/params/ibsi_compliance.csv is the shipped one)"),
    data_root_: Optional[Path] = typer.Option(None, "--data-root", help="shared data folder (default: $RADAE_DATA)"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="comma list (default: all): phantom,A,B,C,D,E"),
) -> None:
    """IBSI 1 compliance of PyRadiomics as radae runs it, against the IBSI reference values."""
    from radae.config import data_root
    from radae.features.ibsi import DATASETS, compliance_table
    from radae.util.fsutil import atomic_write_text
    _setup(False, False, torch_threads=False)
    root = data_root_ or data_root()
    names = tuple(d.strip() for d in datasets.split(",")) if datasets else tuple(DATASETS)
    try:
        unknown = [d for d in names if d not in DATASETS]
        if unknown:
            raise RadaeError(f"--datasets: unknown {unknown}; known: {', '.join(DATASETS)}")
        if not (root / "ibsi" / "reference_values").is_dir():
            raise RadaeError(f"no IBSI data under {root} -> set RADAE_DATA or --data-root")
        table = compliance_table(root, names)
    except RadaeError as e:
        _fail(e)
    atomic_write_text(out, table.to_csv(index=False, lineterminator="\n"))
    typer.echo(f"wrote {out} ({len(table)} rows)")
    typer.echo(table.groupby(["dataset", "status"], sort=False).size().to_string())


@app.command()
def reference() -> None:
    """Print the pipeline YAML reference (every key, type and default) as Markdown; the README's table is this."""
    from radae.config.doc import markdown
    typer.echo(markdown())


def _ingest_stage(ctx) -> None:
    from radae.stages import ingest

    ingest.run(ctx)


def _preprocess_stage(ctx) -> None:  # imported only with --model: the radiomics-only path stays light
    from radae.stages import preprocess

    preprocess.run(ctx)

@manifest_app.command("scan")
def manifest_scan(
    folder: Path = typer.Argument(..., help="folder of NIfTI image/mask pairs or DICOM studies"),
    out: Path = typer.Option(..., "--out", help="manifest CSV to write"),
) -> None:
    """Build a manifest from a folder."""
    from radae.data.scan import scan_folder

    try:
        df = scan_folder(folder, out)
    except RadaeError as e:
        _fail(e)
    typer.echo(f"wrote {len(df)} rows to {out}")


@manifest_app.command("examples")
def manifest_examples(
    out: Path = typer.Option(Path("data_manifests"), "--out", help="folder for the example manifests"),
) -> None:
    """Regenerate the example manifests of the shared real data (paths written as ${RADAE_DATA}/...)."""
    from radae.data.scan import write_data_manifests
    _setup(False, False, torch_threads=False)
    try:
        for name, df in write_data_manifests(out).items():
            typer.echo(f"{out / name}: {len(df)} rows")
    except RadaeError as e:
        _fail(e)

@import_app.command("npz")
def import_npz_cmd(
    npz: Path = typer.Argument(..., help="MedMNIST-style .npz (<split>_images, <split>_labels)"),
    split: str = typer.Option("train", "--split"),
    out: Path = typer.Option(..., "--out"),
    spacing: str = typer.Option("1,1,1", "--spacing", help="voxel spacing x,y,z in mm"),
    mask_rule: str = typer.Option("threshold", "--mask-rule", help="threshold | cube"),
) -> None:
    """Turn MedMNIST-style arrays into NIfTI volumes, masks and a manifest."""
    from radae.data.npz import import_npz

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


def main() -> None:
    """The ``radae`` command and ``python -m radae.cli``: the app, with fewer collector passes (procutil)."""
    from radae.util import procutil
    procutil.fewer_young_collections()
    procutil.skip_final_collection_at_exit()
    app()


if __name__ == "__main__":  # pragma: no cover  (python -m radae.cli, e.g. under torchrun)
    main()
