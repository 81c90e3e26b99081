"""benchmark: leakage-free comparison of learned vs handcrafted features (and baselines) for the endpoints.

The stage adapter: reads the run folder (:mod:`radae.evaluate.cohort` builds the rows and feature sets), runs the
tasks (:mod:`radae.evaluate.tasks`), the perturbation study (:mod:`radae.evaluate.robustness_run`) and the external
validation (:mod:`radae.evaluate.external_run`), and writes ``<run>/benchmark/``. Refuses (BenchmarkError, one line)
what cannot be done honestly: no task configured, a label that is not binary or has one class, fewer patients per
class (or with events) than folds, too few events, feature tables whose keys do not match the cases, a requested
feature set whose table is missing.

Outputs in ``<run>/benchmark/`` (all written atomically):

- ``cv_results.parquet`` - long: task, feature_set, model, control (bool: shuffled-label run), repeat,
  fold (-1 = pooled out-of-fold predictions of that repeat), metric, value, n_train, n_test,
  n_features, best_params (JSON). Classification metrics: auc, balanced_accuracy (threshold = training
  prevalence), brier, calibration_slope, calibration_intercept. Survival: harrell_c, uno_c,
  td_auc@<h> per horizon, td_auc_mean (KM-weighted as scikit-survival), ibs (one window for every fold; NaN where
  a fold's follow-up ends first), horizons / window from config or the training folds' event times; pooled rows: the classification metrics (AUC of the
  fold-standardised linear predictor, the others of the probabilities), or harrell_c of the
  fold-standardised risk and logrank_p of the training-median risk groups.
- ``predictions.parquet`` - out-of-fold predictions per repeat: task, feature_set, model, control,
  repeat, fold, case_id, patient_id, label, time, event, score (P(y=1) or risk), score_std (the linear
  predictor - logit P or risk - standardised by its distribution on the training fold, so rankings pool
  across folds), risk_group (high/low at the training-fold median; survival).
- ``roc_points.parquet`` - task, feature_set, model, repeat, n, auc, point, fpr, tpr and ``calibration_bins.parquet`` -
  task, feature_set, model, repeat, bin, mean_predicted, observed, count: the pooled out-of-fold predictions of the
  first repeat of every classification set x model (:mod:`radae.evaluate.curves`); ``roc_bands.parquet`` - task,
  feature_set, model, repeat, fpr, tpr, tpr_lower, tpr_upper, n_boot: pointwise 95% patient-bootstrap bands
  (``benchmark.bootstrap`` resamples, vertical averaging on 101 FPRs) of the primary comparison's sets, every model.
- ``comparisons.csv`` - ONE paired test per pair of feature sets per task and model (:mod:`radae.evaluate.comparisons`):
  task, model, metric, test (corrected_t_calibrated | corrected_t_nadeau_bengio | patient_bootstrap when every
  fold gave the same difference), role (primary | exploratory), set_a, set_b, estimate_a, estimate_b, diff (a - b),
  ci_low, ci_high (95% of diff), stat, p_raw (floored at 1e-4), p_holm, p_bh (within the role's family),
  p_adjusted (primary: ``benchmark.adjust``; exploratory: BH), significant (p_adjusted < 0.05), n, n_undefined.
  DeLong is not used inside CV (anti-conservative on averaged out-of-fold scores; ``benchmarks/bench_type1.py``).
- ``km.parquet`` - Kaplan-Meier curves of the risk groups (repeat 0): feature_set, model, group,
  time, survival, ci_lower, ci_upper, at_risk.
- ``robustness.parquet`` - feature_set, feature, icc, icc_ci_low, icc_ci_high (95%, F-based), n_lesions, n_conditions, icc_kind;
  ``robustness_values.parquet`` - the raw study values (case_id, condition, feature_set, feature, value).
  ``robustness_inputs.parquet`` - condition, feature_set, n_lesions, n_changed, fraction_changed (lesions whose
  extractor input differs from the unperturbed one); ``robustness_families.parquet`` - feature_set, family,
  n_features, median_icc, ci_low, ci_high (lesion bootstrap), fraction_icc_ge_0_75/0_90, n_lesions.
- ``redundancy.parquet`` - latent, feature, rho (Spearman), abs_rho, is_volume.
- ``label_efficiency.parquet`` (when ``benchmark.label_fractions`` is set) - task, set, model, fraction,
  n_train_patients, n_train, n_test, cv_repeat, fold, repeat (subsample draw), metric, value: every set x model
  refitted on stratified patient subsamples of each outer training fold, scored on the same test fold
  (:mod:`radae.evaluate.label_efficiency`).
- ``external/``, ``models/`` (with ``benchmark.external``) - :mod:`radae.evaluate.external`.
- ``summary.json`` - headline numbers, read by the report; its keys are documented in :mod:`radae.evaluate.summary`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from radae.config import BenchmarkConfig, PipelineConfig
from radae.evaluate import baselines, comparisons, curves, external_run, label_efficiency, redundancy, summary as summaries
from radae.evaluate.cohort import RADIOMICS_RE, Cohort, lesion_frame, load_cohort, read_keyed_table, set_present
from radae.evaluate.robustness_run import LesionExtractor, find_extractors, robust_column_filters, robustness_study
from radae.evaluate.tasks import TaskResult, evaluate_classification, evaluate_survival
from radae.runfolder import CASES, LATENT_RE, ROIS, OnFailure, RunContext, read_table, write_parquet
from radae.util.csvsafe import to_csv_text
from radae.util.errors import BenchmarkError, RadaeError
from radae.util.fsutil import atomic_write_text
from radae.util.values import json_clean

logger = logging.getLogger(__name__)

KM_COLUMNS = ["feature_set", "model", "group", "time", "survival", "ci_lower", "ci_upper", "at_risk"]


def run_benchmark(run_dir: Path, cfg: PipelineConfig, seed: int, on_failure: OnFailure, out_dir: Path,
                  extractor: LesionExtractor | None = None, extractor_reason: str = "") -> dict:
    """Load, evaluate, compare, write. Returns the summary dict (also written to summary.json)."""
    bcfg = cfg.benchmark
    if bcfg.classification is None and bcfg.survival is None:
        raise BenchmarkError("benchmark: no task configured -> set benchmark.classification.label and/or benchmark.survival.time/event")
    cohort = load_cohort(run_dir, cfg, on_failure)
    cohort, validation, ext_info = external_run.external_split(run_dir, cfg, cohort)

    # robustness first: robust_only needs it inside the folds
    values, rob_summary = _robustness(run_dir, cfg, cohort, seed, on_failure, out_dir, extractor, extractor_reason)
    if bcfg.robustness.robust_only and values is None:
        raise BenchmarkError(f"benchmark.robustness.robust_only is set but robustness did not run ({rob_summary['reason']})")
    filters = robust_column_filters(cohort, values, bcfg) if bcfg.robustness.robust_only else {}

    summary = summaries.header(cohort, bcfg)
    tasks: list[TaskResult] = []
    if bcfg.classification is not None:
        tasks.append(evaluate_classification(cohort, bcfg, seed, filters, on_failure))
        summary["classification"] = tasks[-1].block
    if bcfg.survival is not None:
        tasks.append(evaluate_survival(cohort, bcfg, seed, filters, on_failure))
        summary["survival"] = tasks[-1].block

    comp_table = _write_task_tables(tasks, out_dir, bcfg, seed)
    summary["comparisons"] = summaries.comparisons_block(comp_table, bcfg, summary["n_patients"])
    summary["robustness"] = rob_summary
    summary["sample_size"] = external_run.sample_size(summary, cohort, bcfg)
    if validation is not None:
        summary["external"] = external_run.run_external_validation(run_dir, cfg, cohort, validation, ext_info, seed, out_dir, on_failure)
    summary["label_efficiency"] = _label_efficiency([t.label_efficiency for t in tasks if t.label_efficiency is not None], bcfg, out_dir)
    summary["redundancy"] = _redundancy(run_dir, cohort, bcfg, out_dir)
    summary["headline"] = summaries.headline(summary)
    summary = json_clean(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _robustness(run_dir: Path, cfg: PipelineConfig, cohort: Cohort, seed: int, on_failure: OnFailure, out_dir: Path,
                extractor: LesionExtractor | None, reason: str) -> tuple[pd.DataFrame | None, dict]:
    """(study values or None, summary.json's ``robustness``): the study on the cohort's lesions, or why it was skipped."""
    if not cfg.benchmark.robustness.enabled:
        return None, {"status": "skipped", "reason": "benchmark.robustness.enabled is false"}
    if extractor is None:
        rob_summary = {"status": "skipped", "reason": reason or "no extractor"}
        logger.warning("benchmark: robustness skipped: %s", rob_summary["reason"])
        return None, rob_summary
    cases = read_table(run_dir / CASES, "cases table", BenchmarkError)
    cases["case_id"] = cases["case_id"].astype(str)
    cases = cases[cases["case_id"].isin(set(cohort.lesions["case_id"]))]
    return robustness_study(cases, cfg, extractor, seed, on_failure, out_dir)


def _write_task_tables(tasks: list[TaskResult], out_dir: Path, bcfg: BenchmarkConfig, seed: int) -> pd.DataFrame:
    """cv_results, predictions, comparisons, km, ROC points, bands and calibration bins; returns the comparisons table."""
    folds = [f for t in tasks for f in t.run.folds]
    preds = [p for t in tasks for p in t.run.predictions]
    kms = [k for t in tasks for k in t.run.km]
    cv_results = pd.concat([f for f in folds if len(f)], ignore_index=True)
    predictions = pd.concat([p for p in preds if len(p)], ignore_index=True)
    nonempty = [t.comparisons for t in tasks if len(t.comparisons)]
    comp_table = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=comparisons.COLUMNS)
    write_parquet(cv_results, out_dir / "cv_results.parquet")
    write_parquet(predictions, out_dir / "predictions.parquet")
    atomic_write_text(out_dir / "comparisons.csv", to_csv_text(comp_table))
    km = pd.concat(kms, ignore_index=True) if kms else pd.DataFrame(columns=KM_COLUMNS)
    write_parquet(km[KM_COLUMNS], out_dir / "km.parquet")
    roc, cal = curves.curve_tables(predictions)
    write_parquet(roc, out_dir / "roc_points.parquet")
    write_parquet(cal, out_dir / "calibration_bins.parquet")
    bands = curves.roc_bands(predictions, curves.primary_sets(comp_table), bcfg.bootstrap, seed, bcfg.cv.seed)
    write_parquet(bands, out_dir / "roc_bands.parquet")
    return comp_table


def _label_efficiency(frames: list[pd.DataFrame], bcfg: BenchmarkConfig, out_dir: Path) -> dict:
    """Write ``label_efficiency.parquet``; summary.json's ``label_efficiency`` (skipped without fractions)."""
    if not frames:
        return {"status": "skipped", "reason": "benchmark.label_fractions is empty"}
    le = pd.concat(frames, ignore_index=True)
    write_parquet(le, out_dir / "label_efficiency.parquet")
    return label_efficiency.summary(le, {"classification": "auc", "survival": "harrell_c"}, bcfg.label_fractions,
                                    bcfg.label_repeats, min(bcfg.label_cv_repeats, bcfg.cv.repeats))


def _redundancy(run_dir: Path, cohort: Cohort, bcfg: BenchmarkConfig, out_dir: Path) -> dict:
    """Latents vs handcrafted (+ volume), lesion level, descriptive: ``redundancy.parquet`` and its summary."""
    red_summary: dict = {"status": "skipped", "reason": "needs both learned and handcrafted feature sets"}
    if bcfg.redundancy and {"learned", "handcrafted"} <= {n for n in ("learned", "handcrafted") if set_present(cohort, n)}:
        lat = lesion_frame(run_dir, "latent", cohort, LATENT_RE)
        hcf = lesion_frame(run_dir, "radiomics", cohort, RADIOMICS_RE)
        rois = read_keyed_table(run_dir / ROIS, "ROI index").set_index("case_id").loc[lat.index].reset_index()
        vol = pd.Series(baselines.volume_features(rois)[baselines.VOLUME_COLUMN].to_numpy(), name="lesion_volume_ml(log)")
        table = redundancy.redundancy_table(lat.reset_index(drop=True), hcf.loc[lat.index].reset_index(drop=True), vol)
        write_parquet(table, out_dir / "redundancy.parquet")
        red_summary = {"status": "done", "reason": "", **redundancy.redundancy_summary(table)}
    elif not bcfg.redundancy:
        red_summary["reason"] = "benchmark.redundancy is false"
    return red_summary


def run(ctx: RunContext) -> None:
    extractor, reason = (None, "")
    if ctx.cfg.benchmark.robustness.enabled:
        try:
            extractor, reason = find_extractors(ctx.cfg, ctx.run_dir)
        except RadaeError as e:
            extractor, reason = None, str(e)
    summary = run_benchmark(ctx.run_dir, ctx.cfg, ctx.seed, ctx.fail, ctx.stage_dir(), extractor, reason)
    logger.info("benchmark: %s", summary.get("headline", ""))
