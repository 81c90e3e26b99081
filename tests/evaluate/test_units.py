"""The patient is the statistical unit: metrics and survival fits count patients, not lesion rows."""
import numpy as np
import pytest

from radae.evaluate import cv, stats, tasks
from radae.evaluate.folds import FoldSplit
from radae.evaluate.models import PipelineSpec
from radae.evaluate.survival import survival_y
from radae.evaluate.survival_metrics import harrell_c
from radae.evaluate.units import Units, units_for


def test_units_map_rows_to_patients_in_order_of_appearance():
    u = Units.of(np.array(["b", "a", "b", "c", "a"], dtype=object))
    assert list(u.patients) == ["b", "a", "c"] and list(u.first) == [0, 1, 3] and u.n == 3 and not u.identity
    assert list(u.codes) == [0, 1, 0, 2, 1]
    x = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, np.nan], [5.0, 6.0], [np.nan, 8.0]])
    assert np.allclose(u.mean(x), [[2.0, np.nan], [2.0, 6.0], [5.0, 6.0]], equal_nan=True)  # NaN-aware, all-NaN stays NaN
    assert list(u.spread(np.array([10, 20, 30]))) == [10, 20, 10, 30, 20]
    assert list(u.take(np.array([7, 8, 7, 9, 8]))) == [7, 8, 9]


def test_units_apply_only_to_patient_level_outcomes():
    g = np.array(["p1", "p1", "p2"], dtype=object)
    assert units_for(np.array([1, 1, 0]), g).n == 2
    assert units_for(np.array([1, 0, 0]), g) is None  # a lesion-level label: the lesion stays the unit
    assert units_for(np.array([1, 0]), np.array(["p1", "p2"])) is None  # one row per patient: nothing to map
    assert units_for(survival_y([5.0, 5.0, 3.0], [1, 1, 0]), g).n == 2
    assert units_for(survival_y([5.0, 6.0, 3.0], [1, 1, 0]), g) is None


def _cohort(n_patients: int, seed: int):
    rng = np.random.default_rng(seed)
    y = (np.arange(n_patients) % 2).astype(int)
    X = y[:, None] * 0.8 + rng.normal(0, 1, (n_patients, 4))
    return X, y, np.array([f"p{i:02d}" for i in range(n_patients)], dtype=object)


def test_classification_fold_metrics_count_each_test_patient_once():
    """Test patients with 1, 2 or 3 identical lesion rows: the fold's metrics equal those of one row per patient."""
    X, y, pid = _cohort(40, 0)
    train, test = np.arange(28), np.arange(28, 40)
    reps = np.r_[np.ones(28, int), 1 + np.arange(12) % 3]  # training patients once, test patients 1-3 times
    Xd, yd, gd = np.repeat(X, reps, 0), np.repeat(y, reps), np.repeat(pid, reps)
    test_d = np.flatnonzero(np.isin(gd, pid[test]))
    spec = PipelineSpec("classification", "logistic_l2", selection="none")
    one = cv.fit_fold(X, y, pid, FoldSplit(0, 0, train, test), spec, np.zeros(4, bool), seed=1)
    dup = cv.fit_fold(Xd, yd, gd, FoldSplit(0, 0, np.arange(28), test_d), spec, np.zeros(4, bool), seed=1)
    assert dup.n_test == 12 and len(dup.score) == len(test_d) == 24
    for m in ("auc", "brier", "balanced_accuracy", "calibration_slope", "calibration_intercept"):
        assert dup.metrics[m] == pytest.approx(one.metrics[m], abs=1e-12), m
    lesion_auc = stats.auc_score(yd[test_d], dup.score)
    assert abs(lesion_auc - dup.metrics["auc"]) > 1e-3  # what counting lesions would have reported instead


def test_survival_models_are_fitted_on_one_row_per_patient():
    """Duplicating a patient's rows changes neither the Cox fit nor any metric: the fold sees patient means."""
    X, _, pid = _cohort(40, 1)
    rng = np.random.default_rng(4)
    time = rng.exponential(np.exp(-0.7 * X[:, 0])) * 10
    event = rng.random(40) < 0.7
    y = survival_y(time, event)
    reps = 1 + np.arange(40) % 3
    Xd, yd, gd = np.repeat(X, reps, 0), np.repeat(y, reps), np.repeat(pid, reps)
    train, test = np.arange(30), np.arange(30, 40)
    test_d = np.flatnonzero(np.isin(gd, pid[test]))
    train_d = np.flatnonzero(np.isin(gd, pid[train]))
    spec = PipelineSpec("survival", "cox_enet", selection="none")
    ev = cv.SurvivalEval((np.quantile(time, 0.5),))
    one = cv.fit_fold(X, y, pid, FoldSplit(0, 0, train, test), spec, np.zeros(4, bool), seed=2, survival_eval=ev)
    dup = cv.fit_fold(Xd, yd, gd, FoldSplit(0, 0, train_d, test_d), spec, np.zeros(4, bool), seed=2, survival_eval=ev)
    assert (dup.n_train, dup.n_test) == (30, 10)
    for m, v in one.metrics.items():
        assert dup.metrics[m] == pytest.approx(v, abs=1e-9, nan_ok=True), m
    assert np.allclose(dup.score, np.repeat(one.score, reps[test]))  # each lesion row carries its patient's risk


def test_pooled_metrics_and_bootstrap_count_patients():
    X, y, pid = _cohort(30, 2)
    reps = 1 + np.arange(30) % 2
    Xd, yd, gd = np.repeat(X, reps, 0), np.repeat(y, reps), np.repeat(pid, reps)
    split_pat = np.arange(30) % 3
    splits = [FoldSplit(0, k, np.flatnonzero(np.repeat(split_pat, reps) != k), np.flatnonzero(np.repeat(split_pat, reps) == k))
              for k in range(3)]
    spec = PipelineSpec("classification", "logistic_l2", selection="none")
    res = cv.cross_validate(Xd, yd, gd, splits, spec, seed=0)
    rows = tasks._pooled_rows("classification", res, yd, {"task": "classification"}, None, gd)
    auc = rows.set_index("metric").loc["auc", "value"]
    oof = cv.mean_oof_scores(res, len(yd), standardised=True)
    u = Units.of(gd)
    assert auc == pytest.approx(stats.auc_score(u.take(yd), u.mean(oof)))
    assert int(rows["n_test"].iloc[0]) == 30
    # survival pooled C on patients
    t = np.repeat(np.linspace(1, 30, 30), reps)
    e = np.ones(len(t), bool)
    ys = survival_y(t, e)
    score = np.repeat(np.arange(30.0), reps)
    fake = [cv.FoldResult(0, 0, {}, np.arange(len(t)), score, score, np.where(score > 15, "high", "low").astype(object), {}, 1, 0, 30)]
    srows = tasks._pooled_rows("survival", fake, ys, {"task": "survival", "feature_set": "s", "model": "m"}, None, gd)
    c = srows.set_index("metric").loc["harrell_c", "value"]
    assert c == pytest.approx(harrell_c(np.linspace(1, 30, 30), np.ones(30, bool), np.arange(30.0)))
