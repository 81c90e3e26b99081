"""Label efficiency: how each feature set's performance grows with the number of labelled patients.

The seeds' central claim is that unsupervised pretraining reduces the labels a model needs. Inside
every outer training fold of the benchmark, :func:`subsample_train` draws a stratified (class, or
event for survival), seeded subsample of the fold's *patients* at each fraction; the pipeline is fitted
on those patients only and scored on the *same* outer test fold as the full-data run. The encoder is
never retrained: it saw no labels, so the learned features of a lesion are the same at every fraction.

Subsamples of one (outer repeat, fold, subsample repeat) are nested across fractions (the first
``k_s`` patients of one seeded permutation per stratum), so the curves differ by labels added, not
by a fresh draw at each point. Each stratum keeps at least max(:data:`MIN_PER_STRATUM`, inner_folds) patients so the
inner, stratified hyperparameter search stays possible.

Fraction 1.0 reuses the benchmark's own fold results (same folds, same fits), so it costs nothing.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from radae.evaluate import cv, stats
from radae.evaluate.folds import FoldSplit, derived_seed, make_splits, strata_of
from radae.evaluate.models import PipelineSpec
from radae.evaluate.survival_window import SurvivalEval

logger = logging.getLogger(__name__)

LABEL_EFFICIENCY_STREAM = 41  # the labelled-patient subsamples (tasks uses 7, 11, 17, 23; curves 31; external 37)
MAIN_METRIC = {"classification": "auc", "survival": "harrell_c"}
BOUNDED = {"auc", "harrell_c", "uno_c", "balanced_accuracy", "brier", "ibs", "td_auc_mean"}  # intervals clipped to [0, 1]

MIN_PER_STRATUM = 2  # patients per class/event group kept in every subsample (inner stratified CV needs 2)
COLUMNS = ["task", "set", "model", "fraction", "n_train_patients", "n_train", "n_test", "cv_repeat", "fold", "repeat", "metric", "value"]


@dataclass(frozen=True)
class Subsample:
    """One labelled-training subsample of an outer fold: ``split.train`` holds the kept rows, ``split.test`` is unchanged."""

    fraction: float
    repeat: int  # subsample draw (0 for fraction 1.0)
    split: FoldSplit
    n_train_patients: int


def patient_strata(strata: np.ndarray, groups: np.ndarray) -> dict:
    """Per patient its stratum (the largest value among its rows: a patient with any event/positive lesion counts as such)."""
    frame = pd.DataFrame({"g": np.asarray(groups), "s": np.asarray(strata)})
    return frame.groupby("g", sort=True)["s"].max().to_dict()


def subsample_train(split: FoldSplit, strata: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...],
                    repeat: int, seed: int, min_per_stratum: int = MIN_PER_STRATUM) -> list[Subsample]:
    """Nested, stratified, patient-grouped subsamples of ``split.train`` at each fraction (sorted ascending).

    Per stratum s with n_s training patients, k_s = max(min_per_stratum, ceil(fraction * n_s)) (at most
    n_s) patients are kept: the first k_s of a permutation drawn from ``seed`` (with the split's repeat
    and fold, and ``repeat``), so a smaller fraction's patients are a subset of a larger one's. All
    rows (lesions) of a kept patient are kept; test rows are never touched.
    """
    strata, groups = np.asarray(strata), np.asarray(groups)
    train = np.asarray(split.train)
    per_patient = patient_strata(strata[train], groups[train])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), split.repeat, split.fold, int(repeat), 17]))
    orders = {}
    for s in sorted(set(per_patient.values())):
        pats = np.array(sorted(p for p, v in per_patient.items() if v == s), dtype=object)
        orders[s] = pats[rng.permutation(len(pats))]
    out = []
    for f in sorted(fractions):
        if not 0.0 < f <= 1.0:
            raise ValueError(f"label fraction {f} is not in (0, 1]")
        keep = []
        for s, pats in orders.items():
            k = min(len(pats), max(min_per_stratum, math.ceil(f * len(pats) - 1e-9)))
            keep.extend(pats[:k].tolist())
        rows = train[np.isin(groups[train], np.array(keep, dtype=object))]
        out.append(Subsample(float(f), int(repeat), FoldSplit(split.repeat, split.fold, np.sort(rows), split.test), len(keep)))
    return out


def plan(splits: list[FoldSplit], strata: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...],
         repeats: int, cv_repeats: int, seed: int, min_per_stratum: int = MIN_PER_STRATUM) -> list[Subsample]:
    """Every subsample of fractions < 1 for the first ``cv_repeats`` outer repeats, ``repeats`` draws each."""
    small = tuple(f for f in fractions if f < 1.0)
    out: list[Subsample] = []
    if not small:
        return out
    for sp in splits:
        if sp.repeat >= cv_repeats:
            continue
        for r in range(repeats):
            out += subsample_train(sp, strata, groups, small, r, seed, min_per_stratum)
    return out


def run_set(X: np.ndarray, y, groups: np.ndarray, subsamples: list[Subsample], full: list[cv.FoldResult],
            spec: PipelineSpec, seed: int, keys: dict, cv_repeats: int, include_full: bool,
            fit: Callable[[list[FoldSplit]], list[cv.FoldResult]] | None = None) -> pd.DataFrame:
    """Fit ``spec`` on every subsample and score the outer test fold; the long table of :data:`COLUMNS`.

    ``full`` are the benchmark's fold results of the same set and model at fraction 1.0 (reused, not refitted).
    ``fit`` runs a list of splits (default: :func:`radae.evaluate.cv.cross_validate` with ``spec``).
    """
    groups = np.asarray(groups)
    run = fit or (lambda sps: cv.cross_validate(X, y, groups, sps, spec, seed=seed))
    results = _fit_all(run, [s.split for s in subsamples], keys)
    rows = []
    for sub, res in zip(subsamples, results):
        if res is None:  # the fit failed on this subsample (too few patients for the model): a missing value, not 0.5
            rows.append({**keys, "fraction": sub.fraction, "n_train_patients": sub.n_train_patients, "n_train": len(sub.split.train),
                         "n_test": len(sub.split.test), "cv_repeat": sub.split.repeat, "fold": sub.split.fold, "repeat": sub.repeat,
                         "metric": MAIN_METRIC.get(keys.get("task"), "auc"), "value": float("nan")})
            continue
        for m, v in res.metrics.items():
            rows.append({**keys, "fraction": sub.fraction, "n_train_patients": sub.n_train_patients, "n_train": res.n_train,
                         "n_test": res.n_test, "cv_repeat": sub.split.repeat, "fold": sub.split.fold, "repeat": sub.repeat, "metric": m, "value": float(v)})
    if include_full:
        for res in full:
            if res.repeat >= cv_repeats or res.fold < 0:
                continue
            n_pat = int(pd.unique(groups[_train_rows(res, len(groups))]).size)
            for m, v in res.metrics.items():
                rows.append({**keys, "fraction": 1.0, "n_train_patients": n_pat, "n_train": res.n_train,
                             "n_test": res.n_test, "cv_repeat": res.repeat, "fold": res.fold, "repeat": 0, "metric": m, "value": float(v)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _fit_all(run, splits: list[FoldSplit], keys: dict) -> list[cv.FoldResult | None]:
    """All splits at once (parallel); if one fails, each alone, a failure giving None (logged)."""
    from radae.util.errors import BenchmarkError

    if not splits:
        return []
    try:
        return list(run(splits))
    except BenchmarkError:
        out: list[cv.FoldResult | None] = []
        for sp in splits:
            try:
                out.append(run([sp])[0])
            except BenchmarkError as e:
                logger.warning("label efficiency %s: a subsample of %d training rows (repeat %d fold %d) could not be fitted: %s",
                               "/".join(str(v) for v in keys.values()), len(sp.train), sp.repeat, sp.fold, e)
                out.append(None)
        return out


def _train_rows(res: cv.FoldResult, n: int) -> np.ndarray:
    """Training rows of a full-data fold: every task row not in its test fold."""
    mask = np.ones(n, dtype=bool)
    mask[res.test_index] = False
    return mask


def curves(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per task, set, model and fraction: mean of ``metric`` over folds and draws, with a 95% interval.

    The interval is the Nadeau-Bengio corrected t interval of the fold values (as for the benchmark's
    fold means): training sets of different folds overlap, so the naive s/sqrt(J) is too narrow.
    Columns: task, set, model, fraction, n_train_patients (mean), mean, ci_low, ci_high, n_values.
    """
    out = []
    t = table[table["metric"] == metric]
    for (task, fset, model, frac), g in t.groupby(["task", "set", "model", "fraction"], sort=False):
        n_train = float(g["n_train"].mean())
        n_test = float(g["n_test"].mean())
        r = stats.corrected_resampled_ttest(g["value"].to_numpy(float), n_train, n_test)
        lo, hi = (max(r.ci_low, 0.0), min(r.ci_high, 1.0)) if metric in BOUNDED else (r.ci_low, r.ci_high)
        out.append({"task": task, "set": fset, "model": model, "fraction": float(frac),
                    "n_train_patients": float(g["n_train_patients"].mean()), "mean": r.mean,
                    "ci_low": lo, "ci_high": hi, "n_values": int(np.isfinite(g["value"]).sum())})
    return pd.DataFrame(out, columns=["task", "set", "model", "fraction", "n_train_patients", "mean", "ci_low", "ci_high", "n_values"])


def summary(table: pd.DataFrame, main: dict[str, str], fractions: tuple[float, ...], repeats: int, cv_repeats: int) -> dict:
    """summary.json block: {status, fractions, repeats, cv_repeats, <task>: {metric, sets: {set: {model: [points]}}}}."""
    out: dict = {"status": "done", "reason": "", "fractions": sorted(fractions), "repeats": repeats, "cv_repeats": cv_repeats}
    for task, metric in main.items():
        c = curves(table[table["task"] == task], metric)
        if c.empty:
            continue
        sets: dict = {}
        for r in c.itertuples(index=False):
            sets.setdefault(r.set, {}).setdefault(r.model, []).append(
                {"fraction": r.fraction, "n_train_patients": r.n_train_patients, "mean": r.mean, "ci_low": r.ci_low,
                 "ci_high": r.ci_high, "n_values": r.n_values})
        out[task] = {"metric": metric, "sets": sets}
    return out


def run_task(task: str, sets: dict, mask: np.ndarray, y, groups: np.ndarray, bcfg, seed: int,
             full_results: dict, survival_eval: SurvivalEval | None = None,
             column_filters: dict | None = None, batch: np.ndarray | None = None) -> pd.DataFrame:
    """Label-efficiency table of one benchmark task: every feature set x model on the task's rows.

    ``sets``: name -> object with ``X`` (cohort rows x columns), ``forced`` and ``preprocessing`` (the
    benchmark's FeatureSet); ``mask``: the task's rows; ``full_results``: the benchmark's
    ``{(set, model, control): [FoldResult]}``. The outer splits are rebuilt exactly as the benchmark
    made them (same strata, groups, folds, repeats and seed), so the test folds are the same.
    """
    fractions = tuple(bcfg.label_fractions)
    models = list(bcfg.models if task == "classification" else bcfg.survival_models)
    strata = strata_of(y)
    splits = make_splits(strata, groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed)
    cv_repeats = min(bcfg.label_cv_repeats, bcfg.cv.repeats)
    # at least inner_folds patients per class/event group, so the inner stratified search has one per inner fold
    subs = plan(splits, strata, groups, fractions, bcfg.label_repeats, cv_repeats, derived_seed(seed, bcfg.cv.seed, LABEL_EFFICIENCY_STREAM),
                max(MIN_PER_STRATUM, bcfg.cv.inner_folds))
    frames = []
    from radae.evaluate import external, harmonise

    for name, fs in sets.items():
        X, forced = fs.X[mask], fs.forced
        filt = (column_filters or {}).get(name)
        if batch is not None:  # ComBat inside every fold, as in the main CV (batch code as the last column)
            X, forced, filt = harmonise.with_batch(X, forced, batch, filt)
        for model in models:
            logger.info("benchmark %s: label efficiency %s / %s (%d subsamples)", task, name, model, len(subs))
            spec = external.pipeline_spec(task, model, fs.preprocessing, bcfg, batch is not None)

            def fit(sps, X=X, spec=spec, forced=forced, filt=filt):
                return cv.cross_validate(X, y, groups, sps, spec, seed=seed, forced=forced, survival_eval=survival_eval,
                                         column_filter=filt, n_jobs=bcfg.n_jobs)

            frames.append(run_set(X, y, groups, subs, full_results.get((name, model, False), []), spec, seed,
                                  {"task": task, "set": name, "model": model}, cv_repeats, 1.0 in fractions, fit))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
