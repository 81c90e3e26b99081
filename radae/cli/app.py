"""The ``radae`` app and what every command shares: the Typer apps, ``--version``, logging and thread set-up
(:func:`setup`) and the one-line error exit (:func:`fail`)."""
from __future__ import annotations

import logging
import sys

import typer

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


def setup(quiet: bool, verbose: bool, threads: int | None = None, torch_threads: bool = True) -> None:
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


def fail(e: Exception) -> None:
    typer.echo(f"radae: error: {e}", err=True)
    raise typer.Exit(code=2)
