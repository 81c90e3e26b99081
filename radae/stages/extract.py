"""extract: per-lesion feature tables - learned latents and PyRadiomics features - with provenance and a dictionary.

Reads ``preprocess/rois.parquet`` (the lesions; ROI npz for latents, lesion crops for PyRadiomics on the resampled
grid), ``ingest/cases.parquet`` (original image/mask for ``extract.radiomics.grid: original``; source hashes) and
``pretrain/model.pt``. Writes into ``extract/`` (every file atomically):

- ``latent.parquet`` / ``latent.csv`` and ``radiomics.parquet`` / ``radiomics.csv``: one row per lesion, keys
  ``case_id, patient_id`` first (see :mod:`radae.features.table`); Parquet metadata ``radae.provenance`` (the
  table's settings, versions and checkpoint hash)
- ``lesion_provenance.parquet`` / ``.csv``: one row per lesion and table - source and input file hashes,
  preprocess key, PyRadiomics' diagnostics (JSON), reader warnings (e.g. RTSTRUCT contours placed by position) -
  joinable on ``case_id``
- ``latent_patient.*`` / ``radiomics_patient.*`` with ``extract.aggregate: largest | volume_weighted_mean`` (one
  block of columns per modality, prefixed ``MR_`` etc., when the cohort has several: :mod:`radae.features.aggregate`)
- ``data_dictionary.csv``, ``provenance.json`` (sidecar, with date and paths), ``summary.json`` (counts, timings,
  lesions/s), ``ibsi_compliance.csv`` (the shipped IBSI table, :mod:`radae.features.ibsi`)
- ``partial/radiomics/*.json``: one file per extracted lesion, keyed by settings + inputs. A re-run (after a crash,
  or with ``--resume``) reads lesions back from here instead of extracting them again; ``--force`` clears it.

Tables are streamed: rows go to the writers in table order, a chunk at a time (latents as each batch is encoded,
PyRadiomics results read back from their partial files), and a writer holds at most one Parquet row group. What
stays in memory for the whole stage is the lesion index (the used columns of rois/cases, resume keys): about
1.5 KB per lesion (``benchmarks/bench_scale.py``).

Per-lesion problems (unreadable crop, empty mask, PyRadiomics refusing the ROI, non-finite latents) go to
``failures.csv`` and the lesion is left out of that table (``on_error: raise`` stops instead). Features PyRadiomics
returns as NaN stay NaN in the table and are listed in ``failures.csv`` too: never silently.

This adapter reads the inputs; :func:`radae.features.run.write_tables` does the work (lesion tasks and resume keys:
:mod:`radae.features.tasks`; provenance: :mod:`radae.features.provenance`).
"""
from __future__ import annotations

from radae.features.run import write_tables
from radae.features.tasks import CASE_COLUMNS, ROI_COLUMNS, read_index
from radae.runfolder import CASES, ROIS, RunContext
from radae.util.errors import ExtractError, case_message


def run(ctx: RunContext) -> None:
    ecfg = ctx.cfg.extract
    if not ecfg.latent.enabled and not ecfg.radiomics.enabled:
        raise ExtractError("extract: both extract.latent and extract.radiomics are disabled -> enable one or drop "
                           "'extract' from stages")
    out = ctx.stage_dir()
    rois = read_index(ctx.run_dir / ROIS, "ROI index", ROI_COLUMNS)
    dup = rois["case_id"].duplicated()
    if dup.any():
        raise ExtractError(case_message(rois["case_id"][dup].iloc[0], ctx.run_dir / ROIS,
                                        "appears twice in the ROI index (one row per lesion)", "rerun preprocess with --force"))
    rois = rois.sort_values(["patient_id", "case_id"], kind="mergesort").reset_index(drop=True)  # table order: every writer streams in it
    cases = read_index(ctx.run_dir / CASES, "case table", CASE_COLUMNS)
    write_tables(ctx, rois, cases, out)
