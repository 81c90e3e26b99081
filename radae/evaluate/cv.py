"""Nested cross-validation: nothing fitted outside a fold.

For every outer split (:mod:`radae.evaluate.folds`) one pipeline (:func:`radae.evaluate.models.build_pipeline`)
is fitted on the outer training rows only: hyperparameters are chosen by an inner grouped, stratified K-fold
on those rows, and the refit model predicts the outer test rows once. :func:`cross_validate` runs every
split; :func:`fold_table` and :func:`prediction_table` turn the results into the benchmark's long tables.

The statistical unit is the patient (:mod:`radae.evaluate.units`): with several lesion rows per patient, a fold's
metrics are computed on one prediction per patient (the mean of its lesions'), and survival models are fitted on one
row per patient (the mean of its lesions' features). ``n_train``/``n_test`` count those units.

Survival outcomes are scikit-survival structured arrays (:func:`radae.evaluate.survival.survival_y`); their
evaluation settings (td-AUC horizons, IBS window) are a :class:`radae.evaluate.survival_window.SurvivalEval`.
"""
from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.model_selection import GridSearchCV

from radae.util.errors import BenchmarkError
from radae.evaluate import stats, survival_window
from radae.evaluate.folds import FoldSplit, derived_seed, inner_splits, strata_of
from radae.evaluate.models import PipelineSpec, build_pipeline
from radae.evaluate.probability_metrics import balanced_accuracy, brier_score, calibration_slope_intercept, logit
from radae.evaluate.survival import concordance_scorer, is_survival_y
from radae.evaluate.survival_metrics import cumulative_dynamic_auc, harrell_c, integrated_brier_score, uno_c
from radae.evaluate.survival_window import SurvivalEval
from radae.evaluate.units import Units, per_patient, units_for

logger = logging.getLogger(__name__)


@dataclass
class FoldResult:
    repeat: int
    fold: int
    metrics: dict[str, float]
    test_index: np.ndarray
    score: np.ndarray  # P(y=1) or risk score for the test rows
    # the linear predictor (logit P or risk) standardised by its distribution on the training rows: removes
    # fold-to-fold shifts in intercept and scale, so pooled out-of-fold rankings compare across folds
    score_std: np.ndarray
    risk_group: np.ndarray  # "high"/"low" split at the training-fold median risk (survival); "" otherwise
    best_params: dict
    n_features: int  # input columns
    n_train: int  # statistical units (patients when a patient has several rows and one outcome, else rows)
    n_test: int


def classification_metrics(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, balanced accuracy (at ``threshold``), Brier score, calibration slope and intercept."""
    slope, intercept = calibration_slope_intercept(y, prob)
    return {
        "auc": stats.auc_score(y, prob),
        "balanced_accuracy": balanced_accuracy(y, prob, threshold),
        "brier": brier_score(y, prob),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def survival_metrics(y_test, risk, surv_prob, y_train, ev: SurvivalEval, ibs_times: np.ndarray) -> dict[str, float]:
    """Harrell and Uno C (tau = last horizon), td-AUC per horizon and their KM-weighted mean, integrated Brier score
    over the task's fixed window (NaN when ``ibs_times`` is empty: the fold's follow-up does not cover it)."""
    t, e = y_test["time"], y_test["event"]
    tt, te = y_train["time"], y_train["event"]
    tau = max(ev.horizons) if ev.horizons else None
    out = {"harrell_c": harrell_c(t, e, risk), "uno_c": uno_c(t, e, risk, tt, te, tau=tau)}
    if ev.horizons:
        aucs = cumulative_dynamic_auc(t, e, risk, tt, te, ev.horizons)
        for h, a in zip(ev.horizons, aucs):
            out[f"td_auc@{h:g}"] = float(a)
        out["td_auc_mean"] = survival_window.mean_td_auc(aucs, ev.horizons, t, e)
    out["ibs"] = integrated_brier_score(t, e, surv_prob, ibs_times, tt, te) if len(ibs_times) >= 2 else float("nan")
    return out



@dataclass(frozen=True, eq=False)
class FoldJob:
    """One outer fold's own arrays and settings, everything :func:`_fit_and_score` needs besides a scratch folder."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: object  # labels, or a scikit-survival structured array
    y_test: object
    groups_train: np.ndarray
    groups_test: np.ndarray
    test_index: np.ndarray  # row indices of the test rows in the full table
    split: FoldSplit
    spec: PipelineSpec
    forced: np.ndarray  # over the fold's input columns
    seed: int  # the fold's own seed (derived from the run seed, repeat and fold)
    survival_eval: SurvivalEval | None
    n_features: int


def fit_fold(
    X: np.ndarray,
    y,
    groups: np.ndarray,
    split: FoldSplit,
    spec: PipelineSpec,
    forced: np.ndarray,
    seed: int,
    survival_eval: SurvivalEval | None = None,
    column_filter: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FoldResult:
    """Nested fit on ``split.train``, prediction of ``split.test``; nothing sees the test rows before."""
    tr, te = split.train, split.test
    cols = np.ones(X.shape[1], dtype=bool) if column_filter is None else np.asarray(column_filter(tr), dtype=bool)
    if not cols.any():
        raise BenchmarkError(f"repeat {split.repeat} fold {split.fold}: the column filter left no feature")
    Xtr, Xte = X[np.ix_(tr, cols)], X[np.ix_(te, cols)]
    ytr, yte = y[tr], y[te]
    fold_seed = derived_seed(seed, split.repeat, split.fold)
    job = FoldJob(Xtr, Xte, ytr, yte, groups[tr], groups[te], te, split, spec, forced[cols], fold_seed, survival_eval,
                  int(cols.sum()) - int(spec.harmonise))
    with tempfile.TemporaryDirectory(prefix="radae-cv-") as cache:
        return _fit_and_score(job, cache)


def per_patient_rows(job: FoldJob) -> tuple[FoldJob, Units | None]:
    """A survival fold on one row per patient (mean of its lesions' features) and the test rows' patient map.

    Unchanged (and None) for classification, or when every patient has one row or its rows disagree on the outcome.
    """
    if job.spec.task != "survival":
        return job, None
    u_tr, u_te = units_for(job.y_train, job.groups_train), units_for(job.y_test, job.groups_test)
    if u_tr is None and u_te is None:
        return job, None
    if u_tr is not None:
        job = replace(job, X_train=u_tr.mean(job.X_train), y_train=u_tr.take(job.y_train), groups_train=u_tr.patients)
    if u_te is not None:
        job = replace(job, X_test=u_te.mean(job.X_test), y_test=u_te.take(job.y_test), groups_test=u_te.patients)
    return job, u_te


def _fit_and_score(job: FoldJob, cache: str) -> FoldResult:
    """The body of :func:`fit_fold` on the fold's own arrays; ``cache`` is a scratch folder for the pipeline."""
    job, spread = per_patient_rows(job)
    spec, split = job.spec, job.split
    pipe, grid = build_pipeline(spec, job.forced, job.seed)
    n_combos = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    if n_combos > 1:
        pipe.set_params(memory=cache)
    inner = inner_splits(strata_of(job.y_train), job.groups_train, spec.inner_folds, job.seed)
    scoring = "roc_auc" if spec.task == "classification" else concordance_scorer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if n_combos > 1:
            search = GridSearchCV(pipe, grid, scoring=scoring, cv=inner, refit=True, error_score=np.nan, n_jobs=1)
            search.fit(job.X_train, job.y_train)
            scores = search.cv_results_["mean_test_score"]
            if not np.isfinite(scores).any():
                raise BenchmarkError(
                    f"{spec.model} repeat {split.repeat} fold {split.fold}: every hyperparameter setting failed in the "
                    "inner CV -> check the feature table for constant or non-numeric columns"
                )
            fitted, best = search.best_estimator_, dict(search.best_params_)
        else:
            fitted, best = clone(pipe).fit(job.X_train, job.y_train), {k: v[0] for k, v in grid.items()}
        if spec.task == "classification":
            metrics, score, score_std, group = _score_classification(fitted, job)
        else:
            metrics, score, score_std, group = _score_survival(fitted, job)
            if spread is not None:  # one risk per patient, on each of its rows
                score, score_std, group = spread.spread(score), spread.spread(score_std), spread.spread(group)
    return FoldResult(
        repeat=split.repeat,
        fold=split.fold,
        metrics={k: float(v) for k, v in metrics.items()},
        test_index=job.test_index,
        score=np.asarray(score, dtype=float),
        score_std=np.asarray(score_std, dtype=float),
        risk_group=group,
        best_params={k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in best.items()},
        n_features=job.n_features,
        n_train=_n_units(job.y_train, job.groups_train),
        n_test=_n_units(job.y_test, job.groups_test),
    )


def _n_units(y, groups: np.ndarray) -> int:
    u = units_for(y, groups)
    return len(groups) if u is None else u.n


def _score_classification(fitted, job: FoldJob) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(metrics, P(y=1), training-standardised logit, empty risk groups) of the test rows.

    Metrics count patients when a patient's rows share one label (its probability: the mean of its rows'); the
    balanced-accuracy threshold is the training patients' prevalence."""
    p_te = fitted.predict_proba(job.X_test)[:, 1]
    y_tr = per_patient(job.y_train, job.groups_train)[0]
    y_te, _, p_unit = per_patient(job.y_test, job.groups_test, p_te)
    metrics = classification_metrics(y_te, p_unit, threshold=float(np.mean(y_tr)))
    lt = logit(fitted.predict_proba(job.X_train)[:, 1])
    sd = float(np.std(lt))
    score, group = p_te, np.full(len(job.test_index), "", dtype=object)
    score_std = (logit(p_te) - float(np.mean(lt))) / (sd if sd > 0 else 1.0)
    return metrics, score, score_std, group


def _score_survival(fitted, job: FoldJob) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(metrics, risk, training-standardised risk, high/low split at the training median) of the test rows."""
    ev = job.survival_eval or SurvivalEval(())
    risk_te = fitted.predict(job.X_test)
    risk_tr = fitted.predict(job.X_train)
    t_te = job.y_test["time"]
    ibs_times = survival_window.ibs_times_for_fold(ev.ibs_times, t_te)  # one window for every fold, or undefined
    surv = (
        fitted[-1].predict_survival(fitted[:-1].transform(job.X_test), ibs_times)
        if len(ibs_times) >= 2
        else np.zeros((len(job.test_index), 0))
    )
    metrics = survival_metrics(job.y_test, risk_te, surv, job.y_train, ev, ibs_times)
    med, sd = float(np.median(risk_tr)), float(np.std(risk_tr))
    score = risk_te
    score_std = (risk_te - float(np.mean(risk_tr))) / (sd if sd > 0 else 1.0)
    group = np.where(risk_te > med, "high", "low").astype(object)
    return metrics, score, score_std, group


def cross_validate(
    X: np.ndarray,
    y,
    groups: np.ndarray,
    splits: list[FoldSplit],
    spec: PipelineSpec,
    seed: int,
    forced: np.ndarray | None = None,
    survival_eval: SurvivalEval | None = None,
    column_filter: Callable[[np.ndarray], np.ndarray] | None = None,
    n_jobs: int = 1,
) -> list[FoldResult]:
    """Run :func:`fit_fold` on every split (in parallel processes when ``n_jobs > 1``)."""
    X = np.asarray(X, dtype=float)
    groups = np.asarray(groups)
    forced = np.zeros(X.shape[1], dtype=bool) if forced is None else np.asarray(forced, dtype=bool)
    args = (X, y, groups)
    kw = dict(spec=spec, forced=forced, seed=seed, survival_eval=survival_eval, column_filter=column_filter)
    if n_jobs > 1 and len(splits) > 1:
        from joblib import Parallel, delayed

        return Parallel(n_jobs=n_jobs)(delayed(fit_fold)(*args, split=s, **kw) for s in splits)
    return [fit_fold(*args, split=s, **kw) for s in splits]


# ----------------------------------------------------------------------------- tables
def fold_table(results: list[FoldResult], **keys) -> pd.DataFrame:
    """Long per-fold metrics: ``keys`` columns + repeat, fold, metric, value, n_train, n_test, n_features, best_params."""
    rows = []
    for r in results:
        params = json.dumps(r.best_params, sort_keys=True, default=str)
        for metric, value in r.metrics.items():
            rows.append({**keys, "repeat": r.repeat, "fold": r.fold, "metric": metric, "value": value,
                         "n_train": r.n_train, "n_test": r.n_test, "n_features": r.n_features, "best_params": params})
    return pd.DataFrame(rows)


def prediction_table(results: list[FoldResult], case_ids: np.ndarray, patient_ids: np.ndarray, y, **keys) -> pd.DataFrame:
    """Out-of-fold predictions, one row per (repeat, test row)."""
    frames = []
    surv = is_survival_y(y)
    for r in results:
        idx = r.test_index
        frame = pd.DataFrame(
            {
                **{k: v for k, v in keys.items()},
                "repeat": r.repeat,
                "fold": r.fold,
                "case_id": np.asarray(case_ids)[idx],
                "patient_id": np.asarray(patient_ids)[idx],
                "label": np.full(len(idx), np.nan) if surv else np.asarray(y)[idx].astype(float),
                "time": y["time"][idx] if surv else np.full(len(idx), np.nan),
                "event": y["event"][idx].astype(float) if surv else np.full(len(idx), np.nan),
                "score": r.score,
                "score_std": r.score_std,
                "risk_group": r.risk_group.astype(str),
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def mean_oof_scores(results: list[FoldResult], n_rows: int, standardised: bool = False) -> np.ndarray:
    """Per row, the mean over repeats of its out-of-fold score (NaN for rows never tested)."""
    total = np.zeros(n_rows)
    count = np.zeros(n_rows)
    for r in results:
        total[r.test_index] += r.score_std if standardised else r.score
        count[r.test_index] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
