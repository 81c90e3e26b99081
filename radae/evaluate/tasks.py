"""The benchmark tasks: nested CV of every feature set x model, summaries and paired comparisons.

Every feature set is evaluated on the *same* rows and the *same* folds so comparisons are paired; a
shuffled-label control runs the same pipeline on outcomes permuted between patients.
:func:`evaluate_classification` / :func:`evaluate_survival` run one task end to end (outcomes from
:mod:`radae.evaluate.outcomes`, CV, summary block, comparisons, permutation test, label efficiency).

Random streams: every generator is seeded from ``SeedSequence([seed, cv_seed, <stream id>])`` with the stream ids
below, so adding a stream never shifts another.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from radae.config import BenchmarkConfig
from radae.evaluate import (bootstrap, comparisons, cv, external, folds, harmonise, inference, label_efficiency, permutation,
                            pooled, stats, survival_metrics, survival_window)
from radae.evaluate.models import PipelineSpec
from radae.evaluate.cohort import Cohort, FeatureSet
from radae.runfolder import OnFailure
from radae.evaluate.outcomes import classification_outcome, survival_outcome
from radae.evaluate.robustness_run import task_filters
from radae.evaluate.survival import km_curves
from radae.evaluate.units import per_patient
from radae.util.progress import StepLog

logger = logging.getLogger(__name__)

BOUNDED_METRICS = {"auc", "balanced_accuracy", "brier", "harrell_c", "uno_c", "ibs"}  # t-intervals clipped to [0, 1]

CONTROL_STREAM = 7  # outcome permutations of the shuffled-label control
SUMMARY_BOOTSTRAP_STREAM = 11  # patient bootstrap of the pooled metric (summarise_task)
COMPARISON_STREAM = 17  # patient bootstrap of the paired comparisons (compare_sets)
PERMUTATION_STREAM = 23  # outcome permutations of the primary sets' permutation test
# also SeedSequence([seed, cv seed, id]): curves.ROC_BAND_STREAM = 31, external.EXTERNAL_BOOTSTRAP_STREAM = 37,
# label_efficiency.LABEL_EFFICIENCY_STREAM = 41
CONTROL_SPLIT_OFFSET = 1000  # control repeat r splits with cv seed + offset + r
PERMUTATION_SPLIT_OFFSET = 5000  # permutation k splits with cv seed + offset + k


# ----------------------------------------------------------------------------- running a task
@dataclass
class TaskRun:
    """Everything one task produced, before it is turned into tables."""

    task: str
    folds: list[pd.DataFrame] = field(default_factory=list)
    predictions: list[pd.DataFrame] = field(default_factory=list)
    results: dict[tuple[str, str, bool], list[cv.FoldResult]] = field(default_factory=dict)
    km: list[pd.DataFrame] = field(default_factory=list)
    logrank: dict[tuple[str, str], float] = field(default_factory=dict)  # repeat 0, pooled risk groups


def _permute_outcome(y, groups: np.ndarray, rng: np.random.Generator):
    """Shuffle outcomes between patients (all lesions of a patient move together when their outcomes agree)."""
    n = len(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    first = np.array([np.flatnonzero(inv == g)[0] for g in range(len(uniq))])
    consistent = all(len({repr(y[i]) for i in np.flatnonzero(inv == g)}) == 1 for g in range(len(uniq)))
    if consistent:
        perm = rng.permutation(len(uniq))
        return y[first[perm][inv]]
    return y[rng.permutation(n)]


def _metric_summary(results: list[cv.FoldResult], metric: str, method: str = "nadeau_bengio", folds: int = 5) -> dict:
    """Fold-mean metric with the corrected-t interval of ``method``; undefined folds counted in ``n_undefined``."""
    vals = np.array([r.metrics.get(metric, np.nan) for r in results], dtype=float)
    n_train = float(np.mean([r.n_train for r in results]))
    n_test = float(np.mean([r.n_test for r in results]))
    t = inference.cv_ttest(vals, n_train, n_test, folds, method)
    ok = vals[np.isfinite(vals)]
    lo, hi = t.ci_low, t.ci_high
    if metric in BOUNDED_METRICS or metric.startswith("td_auc"):
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return {
        "mean": t.mean,
        "sd": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "n_folds": int(len(ok)),
        "n_undefined": t.n_undefined,
        "ci_method": f"{t.method}_t",
        "degenerate": t.degenerate,
    }


def _control_splits(y, groups: np.ndarray, bcfg: BenchmarkConfig, seed: int) -> list[tuple[object, list[folds.FoldSplit]]]:
    """Per repeat, the permuted outcomes of the shuffled-label control and their own folds ([] when it is off)."""
    controls: list[tuple[object, list[folds.FoldSplit]]] = []
    if bcfg.shuffled_control:
        rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, CONTROL_STREAM]))
        for r in range(bcfg.cv.repeats):
            y_perm = _permute_outcome(y, groups, rng)
            sp = folds.make_splits(folds.strata_of(y_perm), groups, bcfg.cv.folds, 1, bcfg.cv.seed + CONTROL_SPLIT_OFFSET + r)
            controls.append((y_perm, [replace(s, repeat=r) for s in sp]))
    return controls


def run_task(
    task: str,
    cohort: Cohort,
    mask: np.ndarray,
    y,
    bcfg: BenchmarkConfig,
    seed: int,
    column_filters: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    survival_eval: survival_window.SurvivalEval | None = None,
) -> TaskRun:
    """Nested CV of every feature set x model on the rows in ``mask``, plus the shuffled-label control.

    The control runs the first model on every feature set with outcomes permuted between patients,
    a fresh permutation (and fresh folds) in each repeat, so its mean averages over permutations.
    """
    rows = cohort.rows[mask].reset_index(drop=True)
    groups = rows["patient_id"].to_numpy()
    case_ids = rows["case_id"].to_numpy()
    models = list(bcfg.models if task == "classification" else bcfg.survival_models)
    splits = folds.make_splits(folds.strata_of(y), groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed)
    out = TaskRun(task)
    controls = _control_splits(y, groups, bcfg, seed)
    n_fits = len(cohort.sets) * len(models) * bcfg.cv.repeats + (len(cohort.sets) * len(controls))
    progress = StepLog(n_fits, f"benchmark {task}:", logger)  # set x model x repeat, controls included
    by_repeat = [(y, [s for s in splits if s.repeat == r]) for r in sorted({s.repeat for s in splits})]
    for name, fs in cohort.sets.items():
        X, forced, filt = _set_inputs(cohort, name, mask, column_filters)
        for i, model in enumerate(models):
            spec = _spec(task, model, fs, bcfg, harmonise=cohort.batch is not None)
            runs = [(False, by_repeat)] + ([(True, controls)] if controls and i == 0 else [])
            for control, pieces in runs:
                keys = dict(task=task, feature_set=name, model=model, control=control)
                all_res: list[cv.FoldResult] = []
                for rep, (yy, sp) in enumerate(pieces):
                    progress.step(f"{name} / {model}{' (shuffled-label control)' if control else ''}, repeat "
                                  f"{rep + 1}/{len(pieces)}")
                    res = cv.cross_validate(X, yy, groups, sp, spec, seed=seed, forced=forced, survival_eval=survival_eval,
                                            column_filter=filt, n_jobs=bcfg.n_jobs)
                    all_res += res
                    out.predictions.append(cv.prediction_table(res, case_ids, groups, yy, **keys))
                    out.folds.append(_pooled_rows(task, res, yy, keys, None if control else out, groups))
                out.results[(name, model, control)] = all_res
                out.folds.append(cv.fold_table(all_res, **keys))
    return out


def _set_inputs(cohort: Cohort, name: str, mask: np.ndarray, column_filters: Mapping | None):
    """(X, forced, column filter) of one set on the task rows; with ComBat the batch code rides along as the last column."""
    fs = cohort.sets[name]
    X, forced, filt = fs.X[mask], fs.forced, (column_filters or {}).get(name)
    if cohort.batch is not None:
        X, forced, filt = harmonise.with_batch(X, forced, cohort.batch[mask], filt)
    return X, forced, filt


def _spec(task: str, model: str, fs: FeatureSet, bcfg: BenchmarkConfig, harmonise: bool = False) -> PipelineSpec:
    """The per-set fold pipeline (ComBat first when the batch column rides along as the last feature column)."""
    return external.pipeline_spec(task, model, fs.preprocessing, bcfg, harmonise)


def task_inference(run: TaskRun, comps: pd.DataFrame, cohort: Cohort, mask: np.ndarray, y, bcfg: BenchmarkConfig, seed: int,
                   filters: Mapping | None = None, survival_eval: survival_window.SurvivalEval | None = None) -> dict:
    """summary.json's ``primary`` block of a task: the declared family, its sentence, the permutation test."""
    block = comparisons.primary_summary(comps, bcfg.adjust)
    block["declared"] = list(bcfg.primary)
    sets = list(dict.fromkeys(x for p in block["pairs"] for x in (p["set_a"], p["set_b"])))
    if not bcfg.permutations or not sets:
        block["permutation"] = {"status": "skipped", "reason": "benchmark.permutations is 0" if sets else "no primary pair"}
        return block
    model = block["pairs"][0]["model"]
    main = "auc" if run.task == "classification" else "harrell_c"
    groups = cohort.rows["patient_id"].to_numpy()[mask]

    def run_cv(name: str, y_perm, k: int) -> float:  # the same fold pipeline as the real run, ComBat included
        X, forced, filt = _set_inputs(cohort, name, mask, filters)
        sp = folds.make_splits(folds.strata_of(y_perm), groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed + PERMUTATION_SPLIT_OFFSET + k)
        spec = _spec(run.task, model, cohort.sets[name], bcfg, harmonise=cohort.batch is not None)
        res = cv.cross_validate(X, y_perm, groups, sp, spec, seed=seed, forced=forced, survival_eval=survival_eval,
                                column_filter=filt, n_jobs=bcfg.n_jobs)
        return float(np.nanmean([r.metrics.get(main, np.nan) for r in res]))

    observed = {n: float(np.nanmean([r.metrics.get(main, np.nan) for r in run.results[(n, model, False)]])) for n in sets}
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, PERMUTATION_STREAM]))
    logger.info("benchmark %s: permutation test, %d permutations of %s", run.task, bcfg.permutations, ", ".join(sets))
    block["permutation"] = {"status": "done", "model": model, "metric": main,
                            **permutation.permutation_test(observed, run_cv, sets, y, groups, bcfg.permutations, rng)}
    return block


def _pooled_rows(task: str, results: list[cv.FoldResult], y, keys: dict, out: TaskRun | None,
                 groups: np.ndarray | None = None) -> pd.DataFrame:
    """Metrics of the pooled out-of-fold predictions of each repeat (fold = -1); KM curves of repeat 0.

    Balanced accuracy thresholds each fold's probabilities at that fold's *training* prevalence. Every metric counts
    patients when a patient's rows share one outcome (:mod:`radae.evaluate.units`: one mean prediction per patient);
    KM curves and the log-rank test count patients (one time, one group by majority of its lesions).
    """
    rows = []
    for rep in sorted({r.repeat for r in results}):
        rr = [r for r in results if r.repeat == rep]
        idx = np.concatenate([r.test_index for r in rr])
        g = None if groups is None else np.asarray(groups)[idx]
        yu, gu, prob, score = per_patient(y[idx], g, np.concatenate([r.score for r in rr]), np.concatenate([r.score_std for r in rr]))
        n_train = int(np.mean([r.n_train for r in rr]))
        if task == "classification":
            metrics = cv.classification_metrics(yu, prob, float(np.mean(y)))  # calibration needs the probabilities
            metrics["balanced_accuracy"] = pooled.balanced_accuracy_training_prevalence(y, rr, groups)
            metrics["auc"] = stats.auc_score(yu, score)
        else:
            group = np.concatenate([r.risk_group for r in rr]).astype(str)
            curves, p = km_curves(*pooled.patient_level(y["time"][idx], y["event"][idx], group, g))
            metrics = {"harrell_c": survival_metrics.harrell_c(yu["time"], yu["event"], score), "logrank_p": p}
            if out is not None and rep == 0:
                out.logrank[(keys["feature_set"], keys["model"])] = p
                if len(curves):
                    out.km.append(curves.assign(feature_set=keys["feature_set"], model=keys["model"]))
        for m, v in metrics.items():
            rows.append({**keys, "repeat": rep, "fold": -1, "metric": m, "value": float(v), "n_train": n_train,
                         "n_test": int(len(yu)), "n_features": int(np.mean([r.n_features for r in rr])), "best_params": ""})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- statistics across sets
def summarise_task(run: TaskRun, y, groups: np.ndarray, bcfg: BenchmarkConfig, seed: int) -> dict:
    """Per set x model: fold-mean metrics with corrected-t CIs, pooled metric with patient-bootstrap CI."""
    n = len(groups)
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, SUMMARY_BOOTSTRAP_STREAM]))
    method = inference.resolve_method(bcfg.interval, int(pd.unique(groups).size))
    folds = bcfg.cv.folds
    results: dict = {}
    control: dict = {}
    if run.task == "classification":
        metrics = ["auc", "balanced_accuracy", "brier", "calibration_slope", "calibration_intercept"]
        main = "auc"
    else:
        first = next(iter(run.results.values()))
        metrics = ["harrell_c", "uno_c", "td_auc_mean", "ibs"] + sorted(k for k in first[0].metrics if k.startswith("td_auc@"))
        main = "harrell_c"
    for (name, model, is_control), res in run.results.items():
        if is_control:
            control.setdefault(name, {})[model] = {main: _metric_summary(res, main, method, folds)}
            continue
        entry = {m: _metric_summary(res, m, method, folds) for m in metrics}
        oof = cv.mean_oof_scores(res, n, standardised=True)
        ok = np.isfinite(oof)
        yu, gu, su = per_patient(y[ok], groups[ok], oof[ok])  # one pooled score per patient when the patient is the unit
        if run.task == "classification":
            stat = stats.auc_score
            arrays = (yu, su)
        else:
            def stat(t, e, s):
                return survival_metrics.harrell_c(t, e, s)
            arrays = (yu["time"], yu["event"], su)
        b = bootstrap.bootstrap_ci(stat, arrays, gu, bcfg.bootstrap, rng)
        entry[f"{main}_pooled"] = {"estimate": b.estimate, "ci_low": b.ci_low, "ci_high": b.ci_high, "n_boot": b.n_valid,
                                   "ci_method": "patient_bootstrap_percentile",
                                   "scores": "mean over repeats of the out-of-fold linear predictor standardised by its training fold"}
        if entry[main].get("degenerate"):  # every fold gave the same value: a zero-width t interval would be false precision
            entry[main].update(ci_low=b.ci_low, ci_high=b.ci_high, ci_method="patient_bootstrap_percentile (fold values identical)")
        if run.task == "survival":
            entry["logrank_p"] = run.logrank.get((name, model), float("nan"))
        results.setdefault(name, {})[model] = entry
    best = None
    for name, per_model in results.items():
        for model, entry in per_model.items():
            m = entry[main]["mean"]
            if np.isfinite(m) and (best is None or m > best[2]):
                best = (name, model, m)
    return {
        "results": results,
        "shuffled_control": control,
        "best": None if best is None else {"feature_set": best[0], "model": best[1], f"{main}_mean": best[2]},
    }


def compare_sets(run: TaskRun, y, n_rows: int, bcfg: BenchmarkConfig, groups: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """Pairwise tests of feature sets on the same folds, per model: one corrected t-test per pair, a primary
    family (``benchmark.primary``) adjusted alone and exploratory pairs (BH); see :mod:`radae.evaluate.comparisons`."""
    main = "auc" if run.task == "classification" else "harrell_c"
    groups = np.arange(n_rows) if groups is None else groups
    method = inference.resolve_method(bcfg.interval, int(pd.unique(groups).size))
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, COMPARISON_STREAM]))
    if run.task == "classification":
        def stat(yy, sa, sb):
            return stats.auc_score(yy, sa) - stats.auc_score(yy, sb)

        def pooled_arrays(sa, sb, ok):
            yu, gu, pa, pb = per_patient(y[ok], groups[ok], sa[ok], sb[ok])
            return (yu, pa, pb), gu
    else:
        def stat(t, e, sa, sb):
            return survival_metrics.harrell_c(t, e, sa) - survival_metrics.harrell_c(t, e, sb)

        def pooled_arrays(sa, sb, ok):
            yu, gu, pa, pb = per_patient(y[ok], groups[ok], sa[ok], sb[ok])
            return (yu["time"], yu["event"], pa, pb), gu

    def oof(res):
        return cv.mean_oof_scores(res, n_rows, standardised=True)

    df = comparisons.compare(run.task, run.results, main, method, bcfg.cv.folds, bcfg.primary, bcfg.adjust, oof, stat,
                             pooled_arrays, bcfg.bootstrap, rng)
    return df


# ----------------------------------------------------------------------------- one task end to end
@dataclass
class TaskResult:
    """One task's summary.json block, its runs, its comparisons and its label-efficiency rows (None when off)."""

    block: dict
    run: TaskRun
    comparisons: pd.DataFrame
    label_efficiency: pd.DataFrame | None = None


def evaluate_classification(cohort: Cohort, bcfg: BenchmarkConfig, seed: int, filters: dict, on_failure: OnFailure) -> TaskResult:
    """The classification task on the cohort: CV, summary, comparisons, primary inference, label efficiency."""
    mask, y = classification_outcome(cohort.rows, bcfg.classification.label, on_failure)
    run = run_task("classification", cohort, mask, y, bcfg, seed, task_filters(filters, mask))
    groups = cohort.rows["patient_id"].to_numpy()[mask]
    s = summarise_task(run, y, groups, bcfg, seed)
    block = {"label": bcfg.classification.label, "n_rows": int(mask.sum()), "n_patients": int(pd.unique(groups).size),
             "n_positive": int(y.sum()), "n_negative": int((1 - y).sum()), **s}
    comps = compare_sets(run, y, int(mask.sum()), bcfg, groups, seed)
    block["primary"] = task_inference(run, comps, cohort, mask, y, bcfg, seed, task_filters(filters, mask))
    curve = None
    if bcfg.label_fractions:
        curve = label_efficiency.run_task("classification", cohort.sets, mask, y, groups, bcfg, seed, run.results,
                                          column_filters=task_filters(filters, mask),
                                          batch=None if cohort.batch is None else cohort.batch[mask])
    return TaskResult(block, run, comps, curve)


def evaluate_survival(cohort: Cohort, bcfg: BenchmarkConfig, seed: int, filters: dict, on_failure: OnFailure) -> TaskResult:
    """The survival task: horizons and IBS window from the training folds, then as :func:`evaluate_classification`."""
    sv = bcfg.survival
    mask, y = survival_outcome(cohort.rows, sv.time, sv.event, bcfg.cv.folds, on_failure)
    groups = cohort.rows["patient_id"].to_numpy()[mask]
    ev = survival_window.choose_settings(y, folds.make_splits(folds.strata_of(y), groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed),
                                         sv.horizons, sv.ibs_window)  # the same splits as run_task: training folds only
    run = run_task("survival", cohort, mask, y, bcfg, seed, task_filters(filters, mask), survival_eval=ev)
    s = summarise_task(run, y, groups, bcfg, seed)
    block = {"time": sv.time, "event": sv.event, "n_rows": int(mask.sum()), "n_patients": int(pd.unique(groups).size),
             "n_events": int(y["event"].sum()), "horizons": list(ev.horizons),
             "ibs_window": [float(ev.ibs_times[0]), float(ev.ibs_times[-1])] if len(ev.ibs_times) else None, **s}
    comps = compare_sets(run, y, int(mask.sum()), bcfg, groups, seed)
    block["primary"] = task_inference(run, comps, cohort, mask, y, bcfg, seed, task_filters(filters, mask), ev)
    curve = None
    if bcfg.label_fractions:
        curve = label_efficiency.run_task("survival", cohort.sets, mask, y, groups, bcfg, seed, run.results, ev,
                                          task_filters(filters, mask), None if cohort.batch is None else cohort.batch[mask])
    return TaskResult(block, run, comps, curve)
