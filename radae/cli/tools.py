"""``radae synth``, ``predict``, ``info`` and ``ibsi``: the synthetic cohort, locked-model predictions, versions and
threads, and IBSI compliance."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from radae.util.errors import RadaeError
from radae.cli.app import fail, setup, app


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

    setup(False, False)
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
        fail(e)
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
def ibsi(
    out: Path = typer.Option(..., "--out", help="CSV file to write (radae/params/ibsi_compliance.csv is the shipped one)"),
    data_root_: Optional[Path] = typer.Option(None, "--data-root", help="shared data folder (default: $RADAE_DATA)"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="comma list (default: all): phantom,A,B,C,D,E"),
) -> None:
    """IBSI 1 compliance of PyRadiomics as radae runs it, against the IBSI reference values."""
    from radae.config import data_root
    from radae.features.ibsi import DATASETS, compliance_table
    from radae.util.fsutil import atomic_write_text

    setup(False, False, torch_threads=False)
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
        fail(e)
    atomic_write_text(out, table.to_csv(index=False, lineterminator="\n"))
    typer.echo(f"wrote {out} ({len(table)} rows)")
    typer.echo(table.groupby(["dataset", "status"], sort=False).size().to_string())
