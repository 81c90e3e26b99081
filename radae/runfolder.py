"""The run folder: the contract between stages — where each artefact lives and how it is read and written.

A run folder ``<runs_dir>/<name>/`` holds ``config.resolved.yaml``, ``environment.json``, one sub-folder per stage
(each with ``_stage.json`` and ``failures.csv``) and ``failures.csv`` (all stages' per-case failures, pipeline order).

Artefacts (paths relative to the run folder; the stage that writes them first):

===============================  ==========  =======================================================================
``ingest/cases.parquet``         ingest      one row per lesion: case_id, patient_id, modality, image, mask, outcomes
``preprocess/rois.parquet``      preprocess  one row per lesion: :data:`ROI_INDEX_COLUMNS` (ROI ``.npz`` in the cache)
``pretrain/model.pt``            pretrain    the trained autoencoder (``radae.models.checkpoint``)
``pretrain/diagnostics.json``    pretrain    reconstruction diagnostics and the converged verdict
``extract/latent.parquet``       extract     learned features: keys + :func:`latent_columns`
``extract/radiomics.parquet``    extract     PyRadiomics features: keys + ``<image type>_<class>_<feature>``
``extract/<head>.parquet``       extract     feature heads (``learned_pooled``, ``anomaly``, ``random_*``)
``benchmark/*.parquet``          benchmark   CV results, predictions, comparisons, ROC points / bands, calibration
                                             bins, robustness (``radae.stages.benchmark``)
``report/report.html``           report      the self-contained report and ``summary.json``
===============================  ==========  =======================================================================
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from radae.config import STAGES, PipelineConfig
from radae.util.csvsafe import to_csv_text
from radae.util.errors import RadaeError
from radae.util.fsutil import atomic_write_text, ensure_dir

FAILURE_COLUMNS = ["case_id", "stage", "file", "message"]
#: how library code reports a per-case failure: ``on_failure(case_id, message, file)`` (:meth:`RunContext.fail`)
OnFailure = Callable[[str | None, str, str | None], None]
KEYS = ("case_id", "patient_id")
logger = logging.getLogger("radae.runner")  # failures are logged as the runner's (one logger for a run's progress)

CASES = "ingest/cases.parquet"
ROIS = "preprocess/rois.parquet"
MODEL = "pretrain/model.pt"
LATENT = "extract/latent.parquet"
RADIOMICS = "extract/radiomics.parquet"

#: ``preprocess/rois.parquet``: one row per lesion (the ROI ``.npz`` format is in ``radae.preprocess.store``)
ROI_INDEX_COLUMNS = [
    "case_id", "patient_id", "modality",
    "roi_path",            # npz (image, mask) at target spacing, normalised
    "patches_path",        # npz of random patches for pretraining ("" if none)
    "radiomics_image",     # NIfTI: lesion bbox + margin, raw intensities, resampled grid
    "radiomics_mask",      # NIfTI: matching mask (uint8 0/1)
    "image_sha256", "mask_sha256", "preprocess_key",
    "orig_spacing_x", "orig_spacing_y", "orig_spacing_z",
    "spacing_x", "spacing_y", "spacing_z",
    "roi_z", "roi_y", "roi_x",
    "lesion_volume_ml",    # from the original-grid mask
    "voxel_count",         # lesion voxels on the original grid
    "is_evaluation",       # patient is an evaluation patient (excluded from pretraining by default)
]

#: learned-feature columns of ``extract/latent.parquet``: ``latent_000``, ``latent_001``, ...
LATENT_PREFIX = "latent_"
LATENT_RE = re.compile(r"^latent_\d+$")


def latent_columns(dim: int) -> list[str]:
    """The column names of a ``dim``-dimensional latent table."""
    return [f"{LATENT_PREFIX}{i:03d}" for i in range(int(dim))]


def is_latent_column(name) -> bool:
    """Whether ``name`` is a learned-feature column (:func:`latent_columns`)."""
    return bool(LATENT_RE.match(str(name)))


@dataclass
class RunContext:
    """What a stage function gets: the config, the run folder, flags and the per-case failure list."""

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


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df`` as ``path`` (Parquet, no index), atomically: a reader sees the old file or the whole new one."""
    from radae.util.fsutil import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def read_stage_meta(stage_dir: Path) -> dict:
    """``<stage>/_stage.json`` ({} when absent or unreadable)."""
    try:
        return json.loads((Path(stage_dir) / "_stage.json").read_text())
    except (OSError, ValueError):
        return {}


def write_failures(ctx: RunContext, name: str) -> None:
    """``<stage>/failures.csv`` from ``ctx.failures``, then the run's ``failures.csv`` (every stage's, pipeline order)."""
    d = ctx.stage_dir(name)
    df = pd.DataFrame(ctx.failures, columns=FAILURE_COLUMNS)
    atomic_write_text(d / "failures.csv", to_csv_text(df))
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


def read_table(path: Path, what: str, error: type[RadaeError] = RadaeError, required=KEYS,
               columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """A run-folder Parquet table with its ``required`` columns, or ``error`` naming the file and the fix.

    ``columns``: read only those of them the file has (the ``required`` ones are always read), so a stage holds no
    column it does not use (large cohorts)."""
    try:
        if columns is not None:
            import pyarrow.parquet as pq

            have = set(pq.read_schema(path).names)
            want = list(dict.fromkeys([*required, *columns]))
            df = pd.read_parquet(path, columns=[c for c in want if c in have])
        else:
            df = pd.read_parquet(path)
    except FileNotFoundError:
        raise error(f"file {path}: {what} not found -> run the upstream stage first") from None
    except (OSError, ValueError) as e:
        raise error(f"file {path}: cannot read {what} ({e}) -> rerun the upstream stage") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise error(f"file {path}: {what}: column(s) {missing} missing -> rerun the upstream stage with this radae version")
    return df
