"""What every feature table came from: versions, settings hashes, per-table and per-lesion provenance.

Table provenance (:func:`common_provenance` plus the table's own part) goes into the Parquet metadata key
``radae.provenance`` (:mod:`radae.features.table`), so it is path- and date-free: the same settings give the same
bytes in any run folder. Per-lesion provenance is a table of its own, ``lesion_provenance.parquet``
(:data:`LESION_PROVENANCE_COLUMNS`), one row per lesion and feature table, joinable on ``case_id``.
"""
from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd

from radae import __version__ as radae_version
from radae.config import stable_hash
from radae.util.environment import package_versions
from radae.util.values import as_text

#: the packages whose versions each table's provenance lists (in this order, after ``python``)
VERSION_PACKAGES = ("radae", "pyradiomics", "torch", "numpy", "SimpleITK", "PyWavelets", "pandas", "pyarrow", "dask")

#: ``lesion_provenance.parquet``: one row per lesion and feature table, what each row of that table came from
LESION_PROVENANCE_COLUMNS = {c: "text" for c in (
    "table", "case_id", "patient_id", "modality", "preprocess_key", "source_image_sha256", "source_mask_sha256",
    "input_image_sha256", "input_mask_sha256", "diagnostics", "warnings")}
LESION_PROVENANCE_KEYS = ("table", "patient_id", "case_id")

#: the feature heads' column patterns, as the latent table's provenance names them
HEAD_PREFIXES = {"pooled": "pooled_l*_{avg,max,mask}_### (feature set learned_pooled)",
                 "anomaly": "anomaly_* (feature set anomaly)",
                 "random": "random_latent_### / random_pooled_* (feature sets random_encoder / random_pooled; untrained, seeded)"}


def versions() -> dict[str, str | None]:
    """``python`` and :data:`VERSION_PACKAGES` (None if not installed; radae falls back to ``radae.__version__``)."""
    out: dict[str, str | None] = {"python": platform.python_version(), **package_versions(VERSION_PACKAGES, optional=())}
    out["radae"] = out.get("radae") or radae_version
    return out


def settings_hash(cfg) -> str:
    """Hash of what determines the feature values: seed and the data, preprocess, pretrain and extract sections.

    Unlike ``PipelineConfig.hash()`` it leaves out the run's name and folder, so the same settings run in two
    folders give byte-identical tables.
    """
    return stable_hash({"seed": cfg.seed, **{s: cfg.section_hash(s) for s in ("data", "preprocess", "pretrain", "extract")}})


def common_provenance(cfg) -> dict:
    """Provenance shared by every table (path- and date-free: it goes into the Parquet metadata)."""
    return {"radae_version": radae_version, "versions": versions(), "settings_hash": settings_hash(cfg),
            "extract_config_hash": cfg.section_hash("extract"), "preprocess_config_hash": cfg.section_hash("preprocess"),
            "seed": cfg.seed}


def latent_provenance(meta: dict, weights_sha256: str, lcfg, device_type: str) -> dict:
    """The latent table's own provenance: checkpoint and weights hashes, model, inference settings, heads."""
    return {
        "table": "latent",
        "checkpoint_sha256": meta["sha256"],
        "weights_sha256": weights_sha256,
        "model": {k: meta[k] for k in ("kind", "latent_dim", "in_channels", "step", "config_hash", "n_params")}
        | {"roi_size_zyx": list(meta["roi_size_zyx"])},
        "inference": {"device": device_type, "batch_size": lcfg.batch_size, "tta_flips": lcfg.tta_flips,
                      "precision": lcfg.precision, "channels_last": lcfg.channels_last},
        "heads": {"bottleneck": "latent_###", **{h: HEAD_PREFIXES[h] for h in lcfg.heads}},
        "lesion_provenance": "lesion_provenance.parquet",
    }


def radiomics_provenance(grid: str, specs: dict, not_computed: dict) -> dict:
    """The PyRadiomics table's own provenance: grid, each modality's parameter file, columns not computed."""
    return {
        "table": "radiomics",
        "grid": grid,
        "feature_extractor": "PyRadiomics RadiomicsFeatureExtractor",
        "parameters": {m: {"file": Path(s.source).name, "sha256": s.source_sha256, "key": s.key, "params": s.params}
                       for m, s in specs.items()},
        "columns_not_computed": not_computed,
        "lesion_provenance": "lesion_provenance.parquet",
    }


class LesionSources:
    """Per-case facts from the stage's inputs that provenance rows need: modality, preprocess key, source hashes."""

    def __init__(self, rois: pd.DataFrame, cases: pd.DataFrame):
        def col(df, name):
            return dict(zip(df["case_id"], map(as_text, df[name]))) if name in df else {}

        self.modality, self.pkey, self.warnings = col(rois, "modality"), col(rois, "preprocess_key"), col(rois, "warnings")
        self.image, self.mask = col(cases, "image_sha256"), col(cases, "mask_sha256")

    def row(self, table: str, case: str, patient: str, **extra) -> dict:
        """One ``lesion_provenance`` row (:data:`LESION_PROVENANCE_COLUMNS`; ``extra`` fills the input hashes etc.)."""
        return {"table": table, "case_id": case, "patient_id": patient, "modality": self.modality.get(case, ""),
                "preprocess_key": self.pkey.get(case, ""), "source_image_sha256": self.image.get(case, ""),
                "source_mask_sha256": self.mask.get(case, ""), "warnings": self.warnings.get(case, ""), **extra}
