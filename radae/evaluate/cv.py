"""Repeated, patient-grouped, stratified K-fold with nested hyperparameter search - nothing fitted outside a fold.

One sklearn ``Pipeline`` per outer training fold (cloned by ``GridSearchCV``):

    impute (median) -> drop near-constant -> drop highly correlated -> scale -> select -> model

and, for the voxel-PCA baseline, ``impute -> VoxelPCA -> scale -> model``. Clinical covariates added to a
feature set are *forced*: they skip the filters and the selection (imputed and scaled only), through a
``ColumnTransformer``. Hyperparameters are chosen by an inner grouped, stratified K-fold on the outer
training rows only; the refit model predicts the outer test rows once.

Folds: :func:`make_splits` gives the same outer folds to every feature set and model of a task (paired
comparisons need them). Stratification is by class (classification) or by event (survival); a patient's
lesions always fall in the same fold.

Survival outcomes are scikit-survival structured arrays (:func:`radae.evaluate.survival.survival_y`).
"""
from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.feature_selection import SelectorMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from radae.util.errors import BenchmarkError
from radae.evaluate import stats, survival_window
from radae.evaluate.baselines import VoxelPCA
from radae.evaluate.survival import (
    CoxElasticNet,
    SurvivalForest,
    concordance_scorer,
    cox_score_z,
    is_survival_y,
)

logger = logging.getLogger(__name__)

Task = Literal["classification", "survival"]


# ----------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class FoldSplit:
    repeat: int
    fold: int
    train: np.ndarray  # row indices
    test: np.ndarray


def _derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (same parts -> same seed, independent streams otherwise)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def min_groups_per_stratum(strata: np.ndarray, groups: np.ndarray) -> int:
    """Smallest number of distinct groups (patients) that carry each stratum value."""
    frame = pd.DataFrame({"s": np.asarray(strata), "g": np.asarray(groups)})
    counts = frame.drop_duplicates().groupby("s")["g"].nunique()
    return int(counts.min()) if len(counts) > 1 else 0


def make_splits(strata: np.ndarray, groups: np.ndarray, folds: int, repeats: int, seed: int) -> list[FoldSplit]:
    """Repeated stratified group K-fold: ``repeats`` x ``folds`` (train, test) index pairs.

    Raises BenchmarkError if a stratum has fewer patients than folds (a test fold would lack it).
    Every split is checked: no group appears on both sides.
    """
    strata = np.asarray(strata)
    groups = np.asarray(groups)
    have = min_groups_per_stratum(strata, groups)
    if have < folds:
        raise BenchmarkError(
            f"only {have} patients in the smallest outcome class/event group, fewer than cv.folds={folds} "
            "-> lower benchmark.cv.folds or add patients"
        )
    out = []
    for r in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=_derived_seed(seed, r))
        for f, (tr, te) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
            if np.intersect1d(groups[tr], groups[te]).size:
                raise AssertionError("grouped split put one patient in train and test")
            out.append(FoldSplit(r, f, np.sort(tr), np.sort(te)))
    return out


def inner_splits(strata: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped stratified folds within an outer training set (fewer if a stratum is small, at least 2)."""
    k = min(folds, min_groups_per_stratum(strata, groups))
    if k < 2:
        raise BenchmarkError(
            "an outer training fold has fewer than 2 patients in one outcome class/event group, so the inner "
            "hyperparameter search cannot be stratified -> lower benchmark.cv.folds or add patients"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(strata)), strata, groups)]


def strata_of(y) -> np.ndarray:
    """Stratification labels: the class, or the event indicator for survival outcomes."""
    return y["event"].astype(int) if is_survival_y(y) else np.asarray(y).astype(int)


# ----------------------------------------------------------------------------- transformers
def relevance(X: np.ndarray, y) -> np.ndarray:
    """Univariate, outcome-aware relevance of each column (>= 0, larger = more informative).

    Classification: |2 AUC - 1| (Somers' D, rank-based). Survival: |Cox score-test z|.
    """
    X = np.asarray(X, dtype=float)
    if is_survival_y(y):
        return np.abs(cox_score_z(X, y))
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.zeros(X.shape[1])
    from scipy.stats import rankdata

    ranks = rankdata(X, axis=0)
    auc = (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.abs(2.0 * auc - 1.0)


class _Selector(SelectorMixin, BaseEstimator):
    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


class DropNearConstant(_Selector):
    """Drop near-zero-variance columns (caret's rule), fitted on training rows.

    A column goes if it is constant, or if its most frequent value is more than ``freq_ratio`` times as
    common as the second AND it has fewer than ``unique_fraction`` distinct values per row.
    At least one column (the highest-variance one) is always kept.
    """

    def __init__(self, freq_ratio: float = 19.0, unique_fraction: float = 0.1):
        self.freq_ratio = freq_ratio
        self.unique_fraction = unique_fraction

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float)
        n = X.shape[0]
        keep = np.ones(X.shape[1], dtype=bool)
        for j in range(X.shape[1]):
            _, counts = np.unique(X[:, j], return_counts=True)
            if len(counts) == 1:
                keep[j] = False
                continue
            top2 = np.sort(counts)[-2:]
            if top2[1] / top2[0] > self.freq_ratio and len(counts) / n < self.unique_fraction:
                keep[j] = False
        if not keep.any():
            keep[int(np.argmax(X.var(axis=0)))] = True
        self.support_ = keep
        return self


class DropCorrelated(_Selector):
    """Greedy decorrelation: walk the columns in order, keep one unless |Pearson r| with a kept one >= threshold."""

    def __init__(self, threshold: float = 0.95):
        self.threshold = threshold

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        keep = np.ones(p, dtype=bool)
        if self.threshold < 1.0 and p > 1:
            sd = X.std(axis=0)
            Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            corr = np.abs(Z.T @ Z) / X.shape[0]
            kept: list[int] = []
            for j in range(p):
                if kept and corr[j, kept].max() >= self.threshold:
                    keep[j] = False
                else:
                    kept.append(j)
        self.support_ = keep
        return self


class UnivariateSelector(_Selector):
    """Keep the ``k`` columns with the highest univariate relevance (see :func:`relevance`)."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        rel = relevance(X, y)
        order = np.argsort(-rel, kind="stable")[: min(self.k, X.shape[1])]
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order] = True
        self.relevance_ = rel
        return self


class MRMRSelector(_Selector):
    """Greedy minimum-redundancy maximum-relevance selection of ``k`` columns.

    score_j = relevance_j / max(relevance) - mean_{s in selected} |r(j, s)|; the first pick is the most
    relevant column. Relevance as in :func:`relevance`, redundancy as absolute Pearson correlation.
    """

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        rel = relevance(X, y)
        rel = rel / rel.max() if rel.max() > 0 else rel
        sd = X.std(axis=0)
        Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        corr = np.abs(Z.T @ Z) / X.shape[0]
        selected = [int(np.argmax(rel))]
        red_sum = corr[:, selected[0]].copy()
        while len(selected) < min(self.k, p):
            score = rel - red_sum / len(selected)
            score[selected] = -np.inf
            j = int(np.argmax(score))
            selected.append(j)
            red_sum += corr[:, j]
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[selected] = True
        return self


class L1Selector(_Selector):
    """Keep the nonzero coefficients of an L1 path model with at most ``k`` of them.

    Classification: L1 logistic regression over a grid of C from the smallest nonzero one upwards.
    Survival: Coxnet lasso path. The densest model with <= k nonzero coefficients wins; if none has any,
    the most relevant single column is kept. Expects standardised inputs (the pipeline scales first).
    """

    def __init__(self, k: int = 10, random_state: int | None = None):
        self.k = k
        self.random_state = random_state

    def fit(self, X, y):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        support = np.zeros(p, dtype=bool)
        if is_survival_y(y):
            from sksurv.linear_model import CoxnetSurvivalAnalysis

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    path = CoxnetSurvivalAnalysis(l1_ratio=1.0, n_alphas=50, alpha_min_ratio=0.01).fit(X, y)
                    coefs = np.asarray(path.coef_).T  # (n_alphas, p), strongest penalty first
                except ArithmeticError:
                    coefs = np.zeros((0, p))
        else:
            from sklearn.svm import l1_min_c

            yb = np.asarray(y).astype(int)
            c0 = l1_min_c(X, yb, loss="log") * 1.01
            coefs = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for c in c0 * np.logspace(0, 3, 20):
                    m = LogisticRegression(C=c, l1_ratio=1.0, solver="liblinear", random_state=self.random_state).fit(X, yb)
                    coefs.append(m.coef_[0])
            coefs = np.asarray(coefs)
        for row in coefs:
            nz = np.abs(row) > 1e-10
            if nz.sum() <= self.k and nz.any():
                support = nz
        if not support.any():
            support[int(np.argmax(relevance(X, y)))] = True
        self.support_ = support
        return self


SELECTORS: dict[str, Callable[[int, int], BaseEstimator]] = {
    "univariate": lambda k, seed: UnivariateSelector(k),
    "mrmr": lambda k, seed: MRMRSelector(k),
    "l1": lambda k, seed: L1Selector(k, random_state=seed),
}


# ----------------------------------------------------------------------------- models
C_GRID = [0.01, 0.1, 1.0, 10.0]

ModelFactory = Callable[[int], tuple[BaseEstimator, dict[str, list]]]

CLASSIFIERS: dict[str, ModelFactory] = {
    "logistic_l1": lambda seed: (
        LogisticRegression(l1_ratio=1.0, solver="liblinear", max_iter=2000, random_state=seed),
        {"C": C_GRID},
    ),
    "logistic_l2": lambda seed: (LogisticRegression(max_iter=2000), {"C": C_GRID}),
    "logistic_enet": lambda seed: (
        LogisticRegression(solver="saga", max_iter=5000, random_state=seed),
        {"C": C_GRID, "l1_ratio": [0.25, 0.75]},
    ),
    "random_forest": lambda seed: (
        RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1),
        {"min_samples_leaf": [1, 5]},
    ),
    "svm": lambda seed: (
        CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid", cv=3, ensemble=False),
        {"estimator__C": [0.1, 1.0, 10.0]},
    ),
}

SURVIVAL_MODELS: dict[str, ModelFactory] = {
    "cox_enet": lambda seed: (CoxElasticNet(l1_ratio=0.5), {"alpha": [0.01, 0.03, 0.1, 0.3]}),
    "rsf": lambda seed: (SurvivalForest(n_estimators=200, random_state=seed), {"min_samples_leaf": [3, 10]}),
}


@dataclass(frozen=True)
class PipelineSpec:
    """How to build one fold's pipeline (everything but the data)."""

    task: Task
    model: str
    selection: Literal["none", "l1", "univariate", "mrmr"] = "univariate"
    max_features: int = 10
    correlation_threshold: float = 0.95
    inner_folds: int = 3
    preprocessing: Literal["standard", "voxel_pca"] = "standard"
    pca_components: int = 10
    harmonise: bool = False  # the last input column is a batch code: ComBat first (radae.evaluate.harmonise)


def build_pipeline(spec: PipelineSpec, forced: np.ndarray, seed: int, memory: str | None = None) -> tuple[Pipeline, dict[str, list]]:
    """The unfitted pipeline and its hyperparameter grid (keys prefixed for ``GridSearchCV``).

    ``forced``: boolean mask over the input columns that bypass filtering and selection.
    ``memory``: a cache folder for the fitted transformers; the grid only tunes the model, so within one
    inner split the preprocessing is fitted once instead of once per grid point.
    """
    registry = CLASSIFIERS if spec.task == "classification" else SURVIVAL_MODELS
    if spec.model not in registry:
        raise BenchmarkError(f"model {spec.model!r} is not a {spec.task} model; choose from {sorted(registry)}")
    model, grid = registry[spec.model](seed)
    forced = np.asarray(forced, dtype=bool)
    head: list = []
    if spec.harmonise:
        from radae.evaluate.harmonise import ComBat

        forced = forced[:-1]
        head = [("harmonise", ComBat(columns=~forced, unseen="identity"))]  # a small inner split may lack a site
    if spec.preprocessing == "voxel_pca":
        pre: list = [  # voxels are never missing: no imputer
            ("pca", VoxelPCA(spec.pca_components, random_state=seed)),
            ("scale", StandardScaler()),
        ]
    else:
        chain = [
            ("impute", SimpleImputer(strategy="median")),
            ("near_constant", DropNearConstant()),
            ("decorrelate", DropCorrelated(spec.correlation_threshold)),
            ("scale", StandardScaler()),
        ]
        if spec.selection != "none":
            chain.append(("select", SELECTORS[spec.selection](spec.max_features, seed)))
        if forced.all():
            pre = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        elif forced.any():
            cols = ColumnTransformer(
                [
                    ("forced", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), np.flatnonzero(forced)),
                    ("features", Pipeline(chain), np.flatnonzero(~forced)),
                ]
            )
            pre = [("columns", cols)]
        else:
            pre = chain
    pipe = Pipeline(head + pre + [("model", model)], memory=memory)
    return pipe, {f"model__{k}": v for k, v in grid.items()}


# ----------------------------------------------------------------------------- one fold
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
    n_train: int
    n_test: int


@dataclass(frozen=True)
class SurvivalEval:
    """Evaluation settings fixed once per task: td-AUC horizons, Uno tau, IBS time grid."""

    horizons: tuple[float, ...]
    ibs_times: np.ndarray = field(default_factory=lambda: np.zeros(0))


def classification_metrics(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, balanced accuracy (at ``threshold``), Brier score, calibration slope and intercept."""
    slope, intercept = stats.calibration_slope_intercept(y, prob)
    return {
        "auc": stats.auc_score(y, prob),
        "balanced_accuracy": stats.balanced_accuracy(y, prob, threshold),
        "brier": stats.brier_score(y, prob),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def survival_metrics(y_test, risk, surv_prob, y_train, ev: SurvivalEval, ibs_times: np.ndarray) -> dict[str, float]:
    """Harrell and Uno C (tau = last horizon), td-AUC per horizon and their KM-weighted mean, integrated Brier score
    over the task's fixed window (NaN when ``ibs_times`` is empty: the fold's follow-up does not cover it)."""
    t, e = y_test["time"], y_test["event"]
    tt, te = y_train["time"], y_train["event"]
    tau = max(ev.horizons) if ev.horizons else None
    out = {"harrell_c": stats.harrell_c(t, e, risk), "uno_c": stats.uno_c(t, e, risk, tt, te, tau=tau)}
    if ev.horizons:
        aucs = stats.cumulative_dynamic_auc(t, e, risk, tt, te, ev.horizons)
        for h, a in zip(ev.horizons, aucs):
            out[f"td_auc@{h:g}"] = float(a)
        out["td_auc_mean"] = survival_window.mean_td_auc(aucs, ev.horizons, t, e)
    out["ibs"] = stats.integrated_brier_score(t, e, surv_prob, ibs_times, tt, te) if len(ibs_times) >= 2 else float("nan")
    return out


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
    fold_seed = _derived_seed(seed, split.repeat, split.fold)
    with tempfile.TemporaryDirectory(prefix="radae-cv-") as cache:
        return _fit_fold(Xtr, Xte, ytr, yte, groups[tr], te, split, spec, forced[cols], fold_seed, cache, survival_eval, int(cols.sum()) - int(spec.harmonise))


def _fit_fold(Xtr, Xte, ytr, yte, groups_tr, te, split, spec, forced, fold_seed, cache, survival_eval, n_features) -> FoldResult:
    """The body of :func:`fit_fold` on the fold's own arrays; ``cache`` is a scratch folder for the pipeline."""
    pipe, grid = build_pipeline(spec, forced, fold_seed)
    n_combos = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    if n_combos > 1:
        pipe.set_params(memory=cache)
    inner = inner_splits(strata_of(ytr), groups_tr, spec.inner_folds, fold_seed)
    scoring = "roc_auc" if spec.task == "classification" else concordance_scorer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if n_combos > 1:
            search = GridSearchCV(pipe, grid, scoring=scoring, cv=inner, refit=True, error_score=np.nan, n_jobs=1)
            search.fit(Xtr, ytr)
            scores = search.cv_results_["mean_test_score"]
            if not np.isfinite(scores).any():
                raise BenchmarkError(
                    f"{spec.model} repeat {split.repeat} fold {split.fold}: every hyperparameter setting failed in the "
                    "inner CV -> check the feature table for constant or non-numeric columns"
                )
            fitted, best = search.best_estimator_, dict(search.best_params_)
        else:
            fitted, best = clone(pipe).fit(Xtr, ytr), {k: v[0] for k, v in grid.items()}
        if spec.task == "classification":
            p_te = fitted.predict_proba(Xte)[:, 1]
            metrics = classification_metrics(yte, p_te, threshold=float(np.mean(ytr)))
            lt = stats.logit(fitted.predict_proba(Xtr)[:, 1])
            sd = float(np.std(lt))
            score, group = p_te, np.full(len(te), "", dtype=object)
            score_std = (stats.logit(p_te) - float(np.mean(lt))) / (sd if sd > 0 else 1.0)
        else:
            ev = survival_eval or SurvivalEval(())
            risk_te = fitted.predict(Xte)
            risk_tr = fitted.predict(Xtr)
            t_te = yte["time"]
            ibs_times = survival_window.ibs_times_for_fold(ev.ibs_times, t_te)  # one window for every fold, or undefined
            surv = (
                fitted[-1].predict_survival(fitted[:-1].transform(Xte), ibs_times)
                if len(ibs_times) >= 2
                else np.zeros((len(te), 0))
            )
            metrics = survival_metrics(yte, risk_te, surv, ytr, ev, ibs_times)
            med, sd = float(np.median(risk_tr)), float(np.std(risk_tr))
            score = risk_te
            score_std = (risk_te - float(np.mean(risk_tr))) / (sd if sd > 0 else 1.0)
            group = np.where(risk_te > med, "high", "low").astype(object)
    return FoldResult(
        repeat=split.repeat,
        fold=split.fold,
        metrics={k: float(v) for k, v in metrics.items()},
        test_index=te,
        score=np.asarray(score, dtype=float),
        score_std=np.asarray(score_std, dtype=float),
        risk_group=group,
        best_params={k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in best.items()},
        n_features=n_features,
        n_train=len(Xtr),
        n_test=len(te),
    )


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
