"""Ingest stage: manifest (or synthetic cohort) -> ``ingest/cases.parquet`` with content hashes.

No voxels are loaded here except to hash files; reading and geometry checks happen per case in
preprocess, where a broken case becomes a failures.csv row instead of stopping the run.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from radae.config import PipelineConfig
from radae.util.errors import ConfigError, ManifestError
from radae.util.hashing import file_sha256, json_sha256
from radae.config.data import COHORTS
from radae.data.manifest import load_manifest, pseudonymise_key_from_env

logger = logging.getLogger(__name__)


def manifest_path(cfg: PipelineConfig) -> Path:
    """The manifest this pipeline reads (for synth: the generated cohort's manifest)."""
    if cfg.data.manifest is not None:
        return Path(cfg.data.manifest)
    if cfg.data.npz is not None:
        return cfg.run_dir / "imported" / "manifest.csv"
    return cfg.run_dir / "synth" / "manifest.csv"


def ensure_imported(cfg: PipelineConfig) -> None:
    """Import MedMNIST-style arrays into ``<run>/imported`` if configured and not already there."""
    src = cfg.data.npz
    if src is None:
        return
    from radae.util.errors import ConfigError
    from radae.util.fsutil import atomic_write_text
    from radae.data.npz import import_npz

    out = cfg.run_dir / "imported"
    stamp = out / "_import.json"
    want = json_sha256({"cfg": src.model_dump(mode="json"), "npz": file_sha256(src.path)})
    if stamp.exists() and stamp.read_text().strip() == want and (out / "manifest.csv").exists():
        return
    if not Path(src.path).is_file():
        raise ConfigError(f"{cfg.source}: data.npz.path: file not found: {src.path}")
    frames = []
    for split in src.splits:
        df = import_npz(src.path, split, out / split, tuple(src.spacing_mm), src.mask_rule)
        df["split"] = split
        for col in ("image", "mask"):
            df[col] = [str((out / split / p).resolve()) if not Path(p).is_absolute() else p for p in df[col]]
        frames.append(df)
    manifest = pd.concat(frames, ignore_index=True)
    rng = np.random.default_rng(src.seed)
    evaluation = manifest["split"].isin(src.evaluation_splits).to_numpy()
    others = np.flatnonzero(~evaluation)
    pick = rng.choice(others, size=int(round(src.evaluation_fraction * len(others))), replace=False) if len(others) else []
    evaluation[pick] = True
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "manifest.csv", manifest.to_csv(index=False))
    atomic_write_text(out / "evaluation_patients.txt", "\n".join(sorted(manifest.loc[evaluation, "patient_id"].astype(str))) + "\n")
    atomic_write_text(stamp, want)


def ensure_synth(cfg: PipelineConfig) -> None:
    """Generate the synthetic cohort into ``<run>/synth`` if configured and not already there."""
    ensure_imported(cfg)
    if cfg.data.synth is None:
        return
    from radae.data.synth import SYNTH_VERSION, generate_cohort

    out = cfg.run_dir / "synth"
    s = cfg.data.synth
    stamp = out / "_synth.json"
    want = json_sha256({**s.model_dump(mode="json"), "generator": SYNTH_VERSION})
    if stamp.exists() and stamp.read_text().strip() == want and (out / "manifest.csv").exists():
        return
    generate_cohort(out, cases=s.cases, seed=s.seed, size_vox=s.size_vox, multi_lesion_fraction=s.multi_lesion_fraction,
                    sites=s.sites)
    stamp.write_text(want)


def outcome_columns(cfg: PipelineConfig) -> dict[str, tuple[str, ...]]:
    """What the manifest check must enforce for the columns the benchmark uses (outcomes, clinical, cohort, batch)."""
    b = cfg.benchmark
    req = b.outcome_columns()
    num = [b.survival.time] if b.survival else []
    nonneg = list(num)
    binary = [c for c in (b.classification.label if b.classification else None, b.survival.event if b.survival else None) if c]
    req += list(b.clinical)
    num += list(b.clinical)
    # cohort and batch columns (is_evaluation is made by ingest from data.evaluation_patients, not read; with
    # data.validation_manifest so is the cohort column)
    made = {"is_evaluation"} | ({cfg.data.cohort_column} if cfg.data.validation_manifest is not None else set())
    req += [c for c in (b.external.column if b.external else None, b.harmonise.batch if b.harmonise else None) if c and c not in made]
    return {"required_columns": tuple(req), "numeric_columns": tuple(num), "binary_columns": tuple(binary),
            "nonnegative_columns": tuple(nonneg)}


def validated_manifest(cfg: PipelineConfig, check_files: bool = True, skipped: list[dict] | None = None) -> pd.DataFrame:
    """The pipeline's manifest, validated. With ``skipped`` (a list), rows whose files are missing are left out and
    listed there (see :func:`radae.data.manifest.load_manifest`); without, they are errors.

    With ``data.validation_manifest`` that manifest gets the same checks, and the result is both: the development rows,
    then the validation rows, told apart by ``data.cohort_column`` (:func:`with_validation_cohort`)."""
    ensure_synth(cfg)
    key = pseudonymise_key_from_env() if cfg.data.pseudonymise_patients else None
    if cfg.data.pseudonymise_patients and not key:
        raise ConfigError(f"{cfg.source}: data.pseudonymise_patients is true but env RADAE_PSEUDO_KEY is not set")
    checks = dict(root=cfg.data.root, check_files=check_files, modalities=cfg.data.modalities, pseudonymise_key=key,
                  skipped=skipped, **outcome_columns(cfg))
    dev = load_manifest(manifest_path(cfg), **checks)
    if cfg.data.validation_manifest is None:
        return dev
    val = load_manifest(cfg.data.validation_manifest, **checks)
    return with_validation_cohort(dev, val, manifest_path(cfg), Path(cfg.data.validation_manifest), cfg.data.cohort_column)


def with_validation_cohort(dev: pd.DataFrame, val: pd.DataFrame, dev_path: Path, val_path: Path, column: str) -> pd.DataFrame:
    """``dev`` then ``val`` with ``column`` = "development" / "validation". Refuses a case or patient in both manifests
    (the validation cohort must be independent) and a manifest that already has ``column``."""
    for df, path in ((dev, dev_path), (val, val_path)):
        if column in df.columns:
            raise ManifestError(f"manifest {path}: already has a column {column!r}, which ingest fills with the cohort of "
                                f"each row -> rename that column or set data.cohort_column to another name")
    for id_col in ("case_id", "patient_id"):
        both = sorted(set(dev[id_col].astype(str)) & set(val[id_col].astype(str)))
        if both:
            more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
            raise ManifestError(f"{id_col} {both[0]!r}{more} is in both {dev_path} and {val_path} -> a patient belongs to one "
                                "cohort; remove it from one manifest")
    return pd.concat([dev.assign(**{column: COHORTS[0]}), val.assign(**{column: COHORTS[1]})], ignore_index=True)


def evaluation_patients(cfg: PipelineConfig) -> set[str]:
    p = cfg.data.evaluation_patients
    if p is None and cfg.data.synth is not None:
        p = cfg.run_dir / "synth" / "evaluation_patients.txt"  # the labeled synthetic patients
    if p is None and cfg.data.npz is not None:
        p = cfg.run_dir / "imported" / "evaluation_patients.txt"
    if p is None or not Path(p).exists():
        return set()
    return {ln.strip() for ln in Path(p).read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def designated_evaluation(manifest: pd.DataFrame, cfg: PipelineConfig) -> tuple[set[str], int]:
    """(the evaluation patients, how many of them are the validation manifest's). Evaluation patients are kept out of
    pretraining: ``data.evaluation_patients`` (else the ``data.holdout_fraction`` draw among the development cohort's
    labelled patients), plus every patient of ``data.validation_manifest``, whatever the other two say."""
    dev = manifest
    val: set[str] = set()
    if cfg.data.validation_manifest is not None:
        is_val = manifest[cfg.data.cohort_column] == COHORTS[1]
        dev = manifest[~is_val]
        val = set(manifest.loc[is_val, "patient_id"].astype(str))
    return (evaluation_patients(cfg) or holdout_patients(dev, cfg)) | val, len(val)


def holdout_patients(manifest: pd.DataFrame, cfg: PipelineConfig) -> set[str]:
    """A seeded ``data.holdout_fraction`` of the labelled patients (an outcome of the benchmark present), as text ids.

    Labelled: the classification label, else the survival time, is present; without a task every patient counts.
    """
    frac = cfg.data.holdout_fraction
    if not frac:
        return set()
    b = cfg.benchmark
    col = b.classification.label if b.classification else (b.survival.time if b.survival else None)
    labelled = manifest if col is None or col not in manifest else manifest[manifest[col].notna() & (manifest[col].astype(str) != "")]
    pats = np.array(sorted(labelled["patient_id"].astype(str).unique()))
    k = int(round(frac * len(pats)))
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 29]))
    return set(rng.choice(pats, size=k, replace=False).tolist()) if k else set()


def input_fingerprint(cfg: PipelineConfig) -> str:
    """Hash of the manifest bytes and every referenced file's content (memoised by size+mtime).

    Files are keyed by the manifest row and column that name them, never by their absolute path: the paths as written
    are in the manifest's bytes, so moving a run folder (a synthetic or imported cohort inside it) or a manifest
    folder with relative paths keeps the key.
    """
    ensure_synth(cfg)
    mpath = manifest_path(cfg)
    manifests = [mpath] + ([cfg.data.validation_manifest] if cfg.data.validation_manifest is not None else [])
    try:
        skipped: list[dict] = []
        df = validated_manifest(cfg, check_files=True, skipped=skipped)
    except Exception:  # invalid manifest: let the ingest stage raise the proper error
        return "invalid:" + ",".join(file_sha256(p) if Path(p).exists() else "missing" for p in manifests)
    files = []
    for col in ("image", "mask"):
        for case, p in zip(df["case_id"], df[col]):
            if not (isinstance(p, str) and p):
                continue
            try:
                h = file_sha256(p)
            except OSError:  # vanished since the check: ingest records it
                h = "unreadable"
            files.append((str(case), col, h))
    parts = {"manifest": file_sha256(mpath), "files": sorted(files)}
    if cfg.data.validation_manifest is not None:
        parts["validation_manifest"] = file_sha256(cfg.data.validation_manifest)
    if skipped:
        parts["skipped"] = sorted(str(s["case_id"]) for s in skipped)
    if cfg.data.evaluation_patients:
        parts["evaluation"] = file_sha256(cfg.data.evaluation_patients)
    return json_sha256(parts)
