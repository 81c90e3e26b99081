"""Grouped nested CV: folds never split a patient, selection inside the fold, planted signal recovered."""
import numpy as np
import pytest
from sklearn.base import clone

from radae.util.errors import BenchmarkError
from radae.evaluate import cv, folds, models, selectors, survival_window
from radae.evaluate.survival import survival_y


def _grouped_data(rng, n_patients, max_lesions=3):
    sizes = rng.integers(1, max_lesions + 1, size=n_patients)
    groups = np.repeat([f"P{i:03d}" for i in range(n_patients)], sizes)
    patient_label = rng.integers(0, 2, size=n_patients)
    patient_label[:2] = [0, 1]
    y = np.repeat(patient_label, sizes)
    return groups, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_folds_never_split_a_patient(seed):
    rng = np.random.default_rng(seed)
    groups, y = _grouped_data(rng, 30)
    splits = folds.make_splits(y, groups, folds=4, repeats=3, seed=seed)
    assert len(splits) == 12
    for r in range(3):
        rep = [s for s in splits if s.repeat == r]
        test_rows = np.concatenate([s.test for s in rep])
        assert np.array_equal(np.sort(test_rows), np.arange(len(y)))  # each row tested exactly once per repeat
        for s in rep:
            assert not set(groups[s.train]) & set(groups[s.test])
            assert set(y[s.test]) == {0, 1}  # stratified: both classes in every test fold
    # inner splits of a training fold are grouped too
    s = splits[0]
    for tr, te in folds.inner_splits(y[s.train], groups[s.train], 3, seed):
        assert not set(groups[s.train][tr]) & set(groups[s.train][te])


def test_repeats_differ_and_seed_reproduces():
    rng = np.random.default_rng(0)
    groups, y = _grouped_data(rng, 30)
    a = folds.make_splits(y, groups, 3, 2, seed=5)
    b = folds.make_splits(y, groups, 3, 2, seed=5)
    assert all(np.array_equal(x.test, z.test) for x, z in zip(a, b))
    assert not np.array_equal(a[0].test, a[3].test)


def test_too_few_patients_per_class_is_refused():
    groups = np.array(["a", "b", "c", "d", "e", "f"])
    y = np.array([1, 1, 0, 0, 0, 0])
    with pytest.raises(BenchmarkError, match="fewer than cv.folds=3"):
        folds.make_splits(y, groups, folds=3, repeats=1, seed=0)


def test_feature_selection_inside_cv_does_not_leak():
    """Random labels, 300 noise features: selecting inside the folds gives chance AUC, selecting on all rows does not."""
    rng = np.random.default_rng(0)
    n, p = 100, 300
    X = rng.normal(size=(n, p))
    y = rng.permutation(np.r_[np.zeros(50), np.ones(50)]).astype(int)
    groups = np.arange(n)
    splits = folds.make_splits(y, groups, 5, 2, seed=0)
    inside = cv.cross_validate(X, y, groups, splits, models.PipelineSpec("classification", "logistic_l2", max_features=10), seed=0)
    auc_inside = np.mean([r.metrics["auc"] for r in inside])
    # the classic mistake: pick the 10 "best" features on every row, then cross-validate the model
    top = np.argsort(-selectors.relevance(X, y))[:10]
    outside = cv.cross_validate(X[:, top], y, groups, splits, models.PipelineSpec("classification", "logistic_l2", selection="none"), seed=0)
    auc_outside = np.mean([r.metrics["auc"] for r in outside])
    assert 0.3 < auc_inside < 0.65, auc_inside
    assert auc_outside > 0.72, auc_outside


def test_planted_signal_recovered_and_shuffled_labels_are_chance():
    rng = np.random.default_rng(1)
    n_patients = 150
    groups, _ = _grouped_data(rng, n_patients, max_lesions=2)
    n = len(groups)
    X = rng.normal(size=(n, 30))
    _, pid = np.unique(groups, return_inverse=True)
    z = rng.normal(size=n_patients)[pid]  # patient-level signal
    X[:, 3] += 2.0 * z
    y = (z + 0.5 * rng.logistic(size=n) > 0).astype(int)
    spec = models.PipelineSpec("classification", "logistic_l2", max_features=5)
    res = cv.cross_validate(X, y, groups, folds.make_splits(y, groups, 4, 1, seed=0), spec, seed=0)
    assert np.mean([r.metrics["auc"] for r in res]) > 0.7
    # out-of-fold scores cover every row once
    assert np.isfinite(cv.mean_oof_scores(res, n)).all()
    # labels shuffled between patients: chance, within the sampling noise of 150 patients x 3 repeats
    y_pat = np.array([y[pid == g][0] for g in range(n_patients)])
    y_shuf = y_pat[rng.permutation(n_patients)][pid]
    res0 = cv.cross_validate(X, y_shuf, groups, folds.make_splits(y_shuf, groups, 4, 3, seed=0), spec, seed=0)
    assert abs(np.mean([r.metrics["auc"] for r in res0]) - 0.5) < 0.12


def test_survival_cv_recovers_signal():
    rng = np.random.default_rng(2)
    n = 90
    X = rng.normal(size=(n, 12))
    t_ev = rng.exponential(np.exp(-1.2 * X[:, 0]))
    t_c = rng.exponential(2.0, size=n)
    y = survival_y(np.minimum(t_ev, t_c), t_ev <= t_c)
    groups = np.arange(n)
    splits = folds.make_splits(folds.strata_of(y), groups, 3, 1, seed=0)
    ev_t = y["time"][y["event"]]
    ev = survival_window.SurvivalEval(tuple(np.quantile(ev_t, [0.25, 0.5, 0.75])), np.linspace(*np.quantile(ev_t, [0.1, 0.9]), 20))
    res = cv.cross_validate(X, y, groups, splits, models.PipelineSpec("survival", "cox_enet", max_features=4), seed=0, survival_eval=ev)
    m = {k: np.nanmean([r.metrics[k] for r in res]) for k in res[0].metrics}
    assert m["harrell_c"] > 0.7
    assert m["uno_c"] > 0.7
    assert m["td_auc_mean"] > 0.7
    assert 0.0 < m["ibs"] < 0.25
    # risk groups are split at the training-fold median
    assert {g for r in res for g in r.risk_group} == {"high", "low"}


def test_drop_near_constant_and_correlated_are_fitted_on_given_rows_only():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    X = np.column_stack([a, a * 2 + 1e-6 * rng.normal(size=50), np.ones(50), rng.normal(size=50)])
    X[:1, 2] = 5.0  # near-constant: 49 of 50 rows equal, 2 distinct values
    nc = selectors.DropNearConstant().fit(X)
    assert nc.get_support().tolist() == [True, True, False, True]
    dc = selectors.DropCorrelated(0.95).fit(X)
    assert dc.get_support().tolist()[:2] == [True, False]
    # fitted state comes from fit's rows: refitting on other rows can change it
    Y = X.copy()
    Y[:, 1] = rng.normal(size=50)
    assert selectors.DropCorrelated(0.95).fit(Y).get_support()[1]


@pytest.mark.parametrize("selection", ["univariate", "mrmr", "l1"])
def test_selectors_pick_the_informative_columns(selection):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 20))
    y = (X[:, 2] - X[:, 7] + 0.3 * rng.normal(size=120) > 0).astype(int)
    sel = selectors.SELECTORS[selection](2, 0).fit(X, y)
    assert set(np.flatnonzero(sel.get_support())) == {2, 7}
    ys = survival_y(rng.exponential(np.exp(-2 * X[:, 5])), np.ones(120, bool))
    sel_s = selectors.SELECTORS[selection](1, 0).fit(X, ys)
    assert np.flatnonzero(sel_s.get_support()).tolist() == [5]


def test_mrmr_avoids_a_redundant_copy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    X = np.column_stack([a, a + 0.01 * rng.normal(size=200), b])
    y = (a + 0.7 * b > 0).astype(int)
    assert np.flatnonzero(selectors.MRMRSelector(2).fit(X, y).get_support()).tolist() in ([0, 2], [1, 2])
    assert set(np.flatnonzero(selectors.UnivariateSelector(2).fit(X, y).get_support())) == {0, 1}


@pytest.mark.parametrize("model", sorted(models.CLASSIFIERS))
def test_every_classifier_builds_and_predicts_probabilities(model):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = (X[:, 0] > 0).astype(int)
    pipe, grid = models.build_pipeline(models.PipelineSpec("classification", model), np.zeros(6, bool), seed=0)
    assert grid and all(k.startswith("model__") for k in grid)
    p = clone(pipe).fit(X, y).predict_proba(X)[:, 1]
    assert p.shape == (40,) and np.all((p >= 0) & (p <= 1))


def test_forced_clinical_columns_bypass_selection():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    y = (X[:, 1] > 0).astype(int)
    forced = np.zeros(8, bool)
    forced[7] = True  # pure noise but forced in
    pipe, _ = models.build_pipeline(models.PipelineSpec("classification", "logistic_l2", max_features=1), forced, seed=0)
    fitted = clone(pipe).fit(X, y)
    assert fitted.named_steps["model"].coef_.shape[1] == 2  # 1 selected + 1 forced


def test_unknown_model_for_task_is_refused():
    with pytest.raises(BenchmarkError, match="not a survival model"):
        models.build_pipeline(models.PipelineSpec("survival", "svm"), np.zeros(3, bool), seed=0)


def test_parallel_folds_equal_serial():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    y = (X[:, 0] > 0).astype(int)
    groups = np.arange(60)
    splits = folds.make_splits(y, groups, 3, 1, seed=0)
    spec = models.PipelineSpec("classification", "logistic_l2")
    keep = np.arange(20) < 15
    a = cv.cross_validate(X, y, groups, splits, spec, seed=0, column_filter=lambda tr: keep)
    b = cv.cross_validate(X, y, groups, splits, spec, seed=0, column_filter=lambda tr: keep, n_jobs=2)
    for r, s in zip(a, b):
        np.testing.assert_array_equal(r.score, s.score)
        np.testing.assert_array_equal(list(r.metrics.values()), list(s.metrics.values()))
        assert r.n_features == 15
