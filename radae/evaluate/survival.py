"""Survival models with the scikit-learn contract, univariate Cox scores, and Kaplan-Meier risk groups.

Outcome arrays ``y`` are scikit-survival structured arrays with fields ``event`` (bool) and ``time``
(float), made by :func:`survival_y`; they pass through sklearn ``Pipeline``/``GridSearchCV`` unchanged.
Every model's ``predict`` returns a *risk score* (higher = earlier event) and ``predict_survival``
returns S(t | x) on requested times as an (n, len(times)) array.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from radae.evaluate.survival_metrics import harrell_c

logger = logging.getLogger(__name__)


def survival_y(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Structured outcome array (``event`` bool, ``time`` float) as scikit-survival expects."""
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"] = np.asarray(event).astype(bool)
    y["time"] = np.asarray(time, dtype=float)
    return y


def is_survival_y(y) -> bool:
    return getattr(getattr(y, "dtype", None), "names", None) is not None and "time" in y.dtype.names


def cox_score_z(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Univariate Cox score-test statistic z_j for every column of X (Breslow ties), vectorised.

    U_j = sum over events i of (x_ij - xbar_j(R_i)), I_j = sum over events of var_j(R_i), with R_i the
    risk set {k: T_k >= T_i}; z_j = U_j / sqrt(I_j) (> 0: larger x, higher hazard). 0 where I_j = 0.
    """
    X = np.asarray(X, dtype=float)
    time, event = y["time"], y["event"].astype(float)
    uniq, inv = np.unique(time, return_inverse=True)
    g = len(uniq)

    def group_sum(a):  # sum of rows per unique time, shape (g, ...)
        out = np.zeros((g,) + a.shape[1:])
        np.add.at(out, inv, a)
        return out

    s0 = group_sum(np.ones(len(time)))[::-1].cumsum()[::-1]  # at risk at each unique time
    s1 = group_sum(X)[::-1].cumsum(axis=0)[::-1]
    s2 = group_sum(X * X)[::-1].cumsum(axis=0)[::-1]
    d = group_sum(event)  # events per unique time
    xe = group_sum(X * event[:, None])  # sum of x over events per unique time
    mean = s1 / s0[:, None]
    var = np.maximum(s2 / s0[:, None] - mean**2, 0.0)
    u = (xe - d[:, None] * mean).sum(axis=0)
    info = (d[:, None] * var).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(info > 0, u / np.sqrt(info), 0.0)
    return z


def _eval_step_functions(fns, times: np.ndarray) -> np.ndarray:
    """Evaluate scikit-survival StepFunctions at ``times``, holding the end values outside their domain."""
    out = np.empty((len(fns), len(times)))
    for i, fn in enumerate(fns):
        out[i] = fn(np.clip(times, fn.x[0], fn.x[-1]))
        out[i, times < fn.x[0]] = 1.0  # before the first observed time nobody has had the event
    return out


class CoxElasticNet(BaseEstimator):
    """Elastic-net penalised Cox model (scikit-survival's coordinate-descent Coxnet) for one penalty.

    Penalty: alpha * (l1_ratio * ||b||_1 + (1 - l1_ratio) / 2 * ||b||_2^2) on the partial likelihood.
    Inputs should be standardised (the pipeline scales inside the fold). If Coxnet diverges for a
    small alpha (it raises ArithmeticError), alpha is multiplied by 10 up to three times; the value
    used is ``alpha_used_``.
    """

    def __init__(self, alpha: float = 0.1, l1_ratio: float = 0.5, max_iter: int = 100_000):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter

    def fit(self, X, y):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        X = np.asarray(X, dtype=float)
        alpha = float(self.alpha)
        last_err: Exception | None = None
        for _ in range(4):
            model = CoxnetSurvivalAnalysis(
                alphas=[alpha], l1_ratio=self.l1_ratio, fit_baseline_model=True, max_iter=self.max_iter
            )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(X, y)
            except ArithmeticError as e:
                last_err = e
                alpha *= 10.0
                continue
            if alpha != self.alpha:
                logger.info("Coxnet diverged at alpha=%g; used alpha=%g", self.alpha, alpha)
            self.model_ = model
            self.alpha_used_ = alpha
            self.coef_ = np.asarray(model.coef_)[:, 0]
            self.n_features_in_ = X.shape[1]
            return self
        raise ArithmeticError(f"Coxnet did not converge for alpha up to {alpha / 10:g}: {last_err}")

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.coef_

    def predict_survival(self, X, times) -> np.ndarray:
        fns = self.model_.predict_survival_function(np.asarray(X, dtype=float))
        return _eval_step_functions(fns, np.asarray(times, dtype=float))

    def score(self, X, y) -> float:
        return harrell_c(y["time"], y["event"], self.predict(X))


class SurvivalForest(BaseEstimator):
    """Random survival forest (scikit-survival); risk = sum of the cumulative hazard over event times."""

    def __init__(self, n_estimators: int = 200, min_samples_leaf: int = 5, max_features: str | float = "sqrt", random_state: int | None = None):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X, y):
        from sksurv.ensemble import RandomSurvivalForest

        X = np.asarray(X, dtype=float)
        self.model_ = RandomSurvivalForest(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=1,
        ).fit(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        return self.model_.predict(np.asarray(X, dtype=float))

    def predict_survival(self, X, times) -> np.ndarray:
        fns = self.model_.predict_survival_function(np.asarray(X, dtype=float))
        return _eval_step_functions(fns, np.asarray(times, dtype=float))

    def score(self, X, y) -> float:
        return harrell_c(y["time"], y["event"], self.predict(X))


def concordance_scorer(estimator, X, y) -> float:
    """GridSearchCV scorer: Harrell's C of ``estimator.predict(X)``."""
    return harrell_c(y["time"], y["event"], estimator.predict(X))


def km_curves(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[pd.DataFrame, float]:
    """Kaplan-Meier curves per risk group (with 95% CIs and numbers at risk) and the log-rank p-value.

    Returns (long table: group, time, survival, ci_lower, ci_upper, at_risk; p-value). The p-value is
    NaN when fewer than two groups are present.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(int)
    group = np.asarray(group)
    frames = []
    for g in sorted(pd.unique(group)):
        sel = group == g
        km = KaplanMeierFitter().fit(time[sel], event[sel], label=str(g))
        sf = km.survival_function_.iloc[:, 0]
        ci = km.confidence_interval_survival_function_
        frames.append(
            pd.DataFrame(
                {
                    "group": str(g),
                    "time": sf.index.to_numpy(dtype=float),
                    "survival": sf.to_numpy(dtype=float),
                    "ci_lower": ci.iloc[:, 0].to_numpy(dtype=float),
                    "ci_upper": ci.iloc[:, 1].to_numpy(dtype=float),
                    "at_risk": km.event_table["at_risk"].reindex(sf.index).to_numpy(dtype=float),
                }
            )
        )
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(pd.unique(group)) < 2:
        return curves, float("nan")
    p = float(multivariate_logrank_test(time, group, event).p_value)
    return curves, p
