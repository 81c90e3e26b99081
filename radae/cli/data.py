"""``radae manifest scan|examples`` and ``radae import npz``: building manifests and importing datasets."""
from __future__ import annotations

from pathlib import Path

import typer

from radae.util.errors import RadaeError
from radae.cli.app import fail, setup, import_app, manifest_app


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
        fail(e)
    typer.echo(f"wrote {len(df)} rows to {out}")


@manifest_app.command("examples")
def manifest_examples(
    out: Path = typer.Option(Path("data_manifests"), "--out", help="folder for the example manifests"),
) -> None:
    """Regenerate the example manifests of the shared real data (paths written as ${RADAE_DATA}/...)."""
    from radae.data.scan import write_data_manifests

    setup(False, False, torch_threads=False)
    try:
        for name, df in write_data_manifests(out).items():
            typer.echo(f"{out / name}: {len(df)} rows")
    except RadaeError as e:
        fail(e)


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
        fail(RadaeError(f"--spacing {spacing!r}: expected three numbers x,y,z"))
    except RadaeError as e:
        fail(e)
    typer.echo(f"wrote {len(df)} cases to {out}")
