"""The benchmark's external validation: split the cohort by ``benchmark.external``, lock on one part, score the other.

The locked models and their scoring are :mod:`radae.evaluate.external`; this module cuts the benchmark cohort into the
development and validation cohorts (refusing a validation cohort the encoder saw), builds the locked runs of each
task and reports the events per candidate predictor of the development CV (:func:`sample_size`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from radae.config import BenchmarkConfig, PipelineConfig
from radae.evaluate import external
from radae.evaluate.cohort import Cohort
from radae.runfolder import OnFailure
from radae.evaluate.outcomes import classification_outcome, survival_outcome
from radae.util.errors import BenchmarkError

logger = logging.getLogger(__name__)


def _subset(cohort: Cohort, keep: np.ndarray, name: str) -> Cohort:
    """The cohort restricted to the rows in ``keep`` (every feature set and the lesion map follow)."""
    new_row = np.full(len(keep), -1)
    new_row[keep] = np.arange(int(keep.sum()))
    les = cohort.lesions[keep[cohort.lesions["row"].to_numpy()]].assign(row=lambda d: new_row[d["row"].to_numpy()])
    sets = {n: replace(fs, X=fs.X[keep]) for n, fs in cohort.sets.items()}
    return replace(cohort, rows=cohort.rows[keep].reset_index(drop=True), sets=sets, cohort=name, lesions=les.reset_index(drop=True),
                   batch=None if cohort.batch is None else cohort.batch[keep])


def external_split(run_dir: Path, cfg: PipelineConfig, cohort: Cohort) -> tuple[Cohort, Cohort | None, dict]:
    """(development cohort, validation cohort or None, split info). Refuses a validation cohort the encoder saw."""
    ecfg = cfg.benchmark.external
    if ecfg is None:
        return cohort, None, {}
    dev, val = external.cohort_masks(cohort.rows, ecfg.column, ecfg.develop, ecfg.validate_)
    uses_latents = any(st == "learned" for fs in cohort.sets.values() for st in fs.column_study)
    pre = run_dir / "pretrain" / "summary.json"
    note = external.check_encoder_unseen(cohort.rows[val], uses_latents, json.loads(pre.read_text()) if pre.exists() else None,
                                         cfg.pretrain.include_evaluation_patients)
    info = {"column": ecfg.column, "develop": list(ecfg.develop), "validate": list(ecfg.validate_), "encoder": note,
            "n_develop_rows": int(dev.sum()), "n_validate_rows": int(val.sum()),
            "n_develop_patients": int(cohort.rows.loc[dev, "patient_id"].nunique()),
            "n_validate_patients": int(cohort.rows.loc[val, "patient_id"].nunique())}
    return _subset(cohort, dev, "external_development"), _subset(cohort, val, "external_validation"), info


def run_external_validation(run_dir: Path, cfg: PipelineConfig, dev: Cohort, val: Cohort, info: dict, seed: int, out_dir: Path,
                            on_failure: OnFailure) -> dict:
    """Lock every task x set x model on ``dev``, score it on ``val`` (:func:`radae.evaluate.external.run_external`).

    A task the validation cohort cannot score (one class, too few events) is skipped with its reason."""
    bcfg = cfg.benchmark
    runs, skipped = [], {}
    for task in ("classification", "survival"):
        if (bcfg.classification if task == "classification" else bcfg.survival) is None:
            continue
        try:
            if task == "classification":
                md, yd = classification_outcome(dev.rows, bcfg.classification.label, on_failure)
                mv, yv = classification_outcome(val.rows, bcfg.classification.label, on_failure)
            else:
                sv = bcfg.survival
                md, yd = survival_outcome(dev.rows, sv.time, sv.event, bcfg.cv.folds, on_failure)
                mv, yv = survival_outcome(val.rows, sv.time, sv.event, 1, on_failure)
        except BenchmarkError as e:  # the validation cohort cannot score this task: say so, keep the others
            skipped[task] = f"validation cohort: {e}"
            logger.warning("benchmark external: %s skipped (%s)", task, e)
            continue
        runs.append(external.LockedRun(task, np.flatnonzero(md), yd, dev.rows["patient_id"].to_numpy()[md], dev.rows["case_id"].to_numpy()[md],
                                       np.flatnonzero(mv), yv, val.rows["patient_id"].to_numpy()[mv], val.rows["case_id"].to_numpy()[mv]))
    lat = run_dir / "extract" / "latent.parquet"
    from radae.features.table import read_provenance

    enc = read_provenance(lat).get("checkpoint_sha256") if lat.exists() else None
    sets = {n: replace(fs, X=np.vstack([fs.X, val.sets[n].X])) for n, fs in dev.sets.items()}  # dev rows, then validation rows
    n_dev = len(dev.rows)
    runs = [replace(r, X_val=r.X_val + n_dev) for r in runs]
    batch = None if dev.batch is None else (np.r_[dev.batch, val.batch], np.r_[dev.batch, val.batch], dev.batch_labels)
    extra = {"encoder_checkpoint_sha256": enc, "unit": dev.unit, "aggregate": cfg.extract.aggregate,
             "batch_column": bcfg.harmonise.batch if bcfg.harmonise else None}
    out = external.run_external(runs, sets, {"classification": list(bcfg.models), "survival": list(bcfg.survival_models)}, bcfg,
                                seed, out_dir, batch, extra, info["encoder"], info)
    return {**out, "skipped": skipped}


def sample_size(summary: dict, cohort: Cohort, bcfg: BenchmarkConfig) -> dict:
    """Events per candidate predictor (after selection: the model sees at most max_features + forced columns)."""
    out = {}
    for task, ev_key in (("classification", None), ("survival", "n_events")):
        s = summary.get(task)
        if not s:
            continue
        events = min(s["n_positive"], s["n_negative"]) if ev_key is None else s[ev_key]
        per = {}
        for name, fs in cohort.sets.items():
            n_forced = int(fs.forced.sum())
            free = fs.X.shape[1] - n_forced
            k = free if bcfg.selection == "none" or fs.preprocessing == "voxel_pca" else min(bcfg.max_features, free)
            k = min(k, bcfg.voxel_pca_components) if fs.preprocessing == "voxel_pca" else k
            n_pred = k + n_forced
            per[name] = {"candidate_predictors": n_pred, "events": int(events), "events_per_predictor": events / max(n_pred, 1),
                         "warning": external.epv_note(events / max(n_pred, 1))}
        out[task] = per
    return out
