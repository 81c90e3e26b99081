"""``radae features``: PyRadiomics-style extraction without a pipeline (one lesion, or a manifest through the extract
stage's code; :mod:`radae.features.standalone`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from radae.util.errors import RadaeError
from radae.cli.app import QUIET_HELP, VERBOSE_HELP, fail, setup, app


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

            setup(quiet, verbose, torch_threads=False)
            pre = start(manifest, out, params=params, image_types=types, jobs=jobs)
        from radae.features import standalone

        if manifest is None:
            if image is None or mask is None:
                raise RadaeError("give IMAGE and MASK, or --manifest cases.csv --out features.csv")
            setup(True, verbose, torch_threads=False)
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
        setup(quiet, verbose, torch_threads=model is not None)
        stage_fns = {"ingest": _ingest_stage, "preprocess": _preprocess_stage}
        res = standalone.manifest_features(manifest, out, stage_fns, params=params, jobs=jobs, model=model, image_types=types,
                                           quiet=quiet, prefetch=pre)
    except RadaeError as e:
        fail(e)
    finally:
        if pre is not None:
            pre.close()
    s = res["summary"]
    parts = [f"{k} {v['extracted']}/{v['lesions']} lesions" for k, v in s.items() if isinstance(v, dict)]
    typer.echo(f"wrote {res['out']} ({', '.join(parts)}); tables, provenance and failures.csv in {res['work'] / 'extract'}")
    if res["failures"]:
        typer.echo(f"failures: {res['failures']} (see {res['work'] / 'failures.csv'})")


def _ingest_stage(ctx) -> None:
    from radae.stages import ingest

    ingest.run(ctx)


def _preprocess_stage(ctx) -> None:  # imported only with --model: the radiomics-only path stays light
    from radae.stages import preprocess

    preprocess.run(ctx)
