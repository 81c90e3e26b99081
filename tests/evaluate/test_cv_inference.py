"""CV inference: corrected t-tests of valid size, degenerate folds, primary family, permutation test, survival window."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from radae.evaluate import comparisons, cv, inference, multiplicity, permutation, pooled, probability_metrics, stats, survival_metrics, survival_window
from radae.evaluate.folds import make_splits
from radae.evaluate.survival import survival_y


def test_nadeau_bengio_matches_the_existing_estimator_and_calibrated_uses_k_minus_1_df():
    rng = np.random.default_rng(0)
    d = rng.normal(0.02, 0.05, 15)
    ref = stats.corrected_resampled_ttest(d, 40.0, 10.0)
    nb = inference.cv_ttest(d, 40.0, 10.0, folds=5, method="nadeau_bengio")
    assert (nb.mean, nb.se, nb.df, nb.p_value) == pytest.approx((ref.mean, ref.se, ref.df, ref.p_value))
    cal = inference.cv_ttest(d, 40.0, 10.0, folds=5, method="calibrated")
    assert cal.df == 4 and cal.se == pytest.approx(nb.se)
    assert cal.p_value == pytest.approx(2 * sps.t.sf(abs(cal.stat), 4))
    assert cal.ci_low < nb.ci_low and cal.ci_high > nb.ci_high  # wider: 2.776 vs 2.145 standard errors
    half = cal.ci_high - cal.mean
    assert half == pytest.approx(sps.t.ppf(0.975, 4) * cal.se)


def test_auto_is_calibrated_below_100_patients():
    assert inference.resolve_method("auto", 34) == "calibrated"
    assert inference.resolve_method("auto", 99) == "calibrated"
    assert inference.resolve_method("auto", 100) == "nadeau_bengio"
    assert inference.resolve_method("nadeau_bengio", 34) == "nadeau_bengio"
    with pytest.raises(ValueError):
        inference.resolve_method("delong", 34)


def test_identical_folds_are_degenerate_not_infinitely_significant_and_p_is_floored():
    r = inference.cv_ttest(np.full(10, 0.2), 40, 10, 5)
    assert r.degenerate and np.isnan(r.p_value) and np.isnan(r.stat)
    huge = inference.cv_ttest(np.r_[np.full(9, 0.5), 0.5 + 1e-9], 40, 10, 5)
    assert huge.p_value == inference.P_FLOOR  # t ~ 1e9 would give p ~ 1e-30
    u = inference.cv_ttest([0.1, np.nan, 0.2, 0.15, np.nan], 40, 10, 5)
    assert u.n_folds == 3 and u.n_undefined == 2


def test_bootstrap_difference_interval_and_floored_p():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    perfect = y + rng.normal(0, 0.01, 40)
    noise = rng.normal(0, 1, 40)
    groups = np.arange(40)

    def stat(yy, a, b):
        return stats.auc_score(yy, a) - stats.auc_score(yy, b)

    b = inference.bootstrap_difference(stat, (y, perfect, noise), groups, 200, np.random.default_rng(0))
    assert b.ci_low > 0 and b.ci_low < b.estimate <= b.ci_high
    assert b.p_value == pytest.approx(1 / (b.n_valid + 1))  # never 0
    same = inference.bootstrap_difference(stat, (y, noise, noise), groups, 200, np.random.default_rng(0))
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0.0


def test_primary_family_is_declared_pair_plus_best_learned_set():
    names = ["learned", "handcrafted", "combined", "volume", "learned_pooled", "anomaly", "clinical+learned"]
    means = {"learned": 0.7, "handcrafted": 0.65, "combined": 0.95, "volume": 0.9, "learned_pooled": 0.72,
             "anomaly": 0.6, "clinical+learned": 0.9}
    # the best of the autoencoder's own sets; combined / clinical+ mix in other columns and stay exploratory
    assert comparisons.primary_pairs(names, ("learned", "handcrafted"), means) == [("learned", "handcrafted"), ("learned_pooled", "handcrafted")]
    means["learned_pooled"] = 0.5
    assert comparisons.primary_pairs(names, ("learned", "handcrafted"), means) == [("learned", "handcrafted")]
    assert comparisons.primary_pairs(["learned", "handcrafted"], ("learned", "handcrafted"), means) == [("learned", "handcrafted")]
    assert comparisons.primary_pairs(["volume", "handcrafted"], ("learned", "handcrafted"), means) == []


def _fold(rep, fold, auc, n_train=32, n_test=8):
    return cv.FoldResult(rep, fold, {"auc": auc}, np.arange(fold * n_test, (fold + 1) * n_test), np.zeros(n_test), np.zeros(n_test),
                         np.full(n_test, ""), {}, 3, n_train, n_test)


def test_compare_gives_one_row_per_pair_with_separate_families():
    rng = np.random.default_rng(2)
    sets = {"learned": 0.75, "handcrafted": 0.70, "combined": 0.76, "learned_pooled": 0.78, "volume": 0.55}
    results = {(s, "m", False): [_fold(r, f, m + rng.normal(0, 0.05)) for r in range(2) for f in range(5)] for s, m in sets.items()}
    results[("learned", "m", True)] = [_fold(r, f, 0.5) for r in range(2) for f in range(5)]  # the control is never compared
    df = comparisons.compare("classification", results, "auc", "calibrated", 5, ("learned", "handcrafted"), "holm",
                             None, None, None, 0, np.random.default_rng(0))
    assert len(df) == 10 and list(df.columns) == comparisons.COLUMNS
    prim = df[df.role == "primary"]
    assert list(zip(prim.set_a, prim.set_b)) == [("learned", "handcrafted"), ("learned_pooled", "handcrafted")]  # combined mixes in handcrafted: exploratory
    assert np.allclose(prim.p_adjusted, multiplicity.holm(prim.p_raw))
    expl = df[df.role == "exploratory"]
    assert np.allclose(expl.p_adjusted, multiplicity.benjamini_hochberg(expl.p_raw))
    assert (df.test == "corrected_t_calibrated").all()


def test_permutation_test_of_a_real_signal_and_of_noise():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 2)  # two lesions per patient, outcomes agree within a patient
    y = np.repeat(rng.permutation(np.arange(30) < 15).astype(int), 2)
    signal = y + rng.normal(0, 0.5, 60)
    noise = rng.normal(0, 1, 60)
    feats = {"signal": signal, "noise": noise}

    def run_cv(name, y_perm, k):
        return stats.auc_score(y_perm, feats[name])

    obs = {k: stats.auc_score(y, v) for k, v in feats.items()}
    out = permutation.permutation_test(obs, run_cv, ["signal", "noise"], y, groups, 99, np.random.default_rng(0))
    assert out["sets"]["signal"]["p_value"] == pytest.approx(0.01)  # (1 + 0) / (1 + 99)
    assert out["sets"]["noise"]["p_value"] > 0.05
    y_perm = permutation.permute_between_patients(y, groups, np.random.default_rng(1))
    assert (y_perm[::2] == y_perm[1::2]).all() and y_perm.sum() == y.sum()


def test_mean_td_auc_matches_scikit_survival():
    from sksurv.metrics import cumulative_dynamic_auc

    rng = np.random.default_rng(4)
    n = 120
    risk = rng.normal(size=n)
    t = rng.exponential(np.exp(-risk)) * 10
    c = rng.exponential(15, n)
    time, event = np.minimum(t, c), t <= c
    ytr = survival_y(time[:80], event[:80])
    yte = survival_y(time[80:], event[80:])
    hz = np.quantile(time[80:][event[80:]], [0.25, 0.5, 0.75])
    aucs_ref, mean_ref = cumulative_dynamic_auc(ytr, yte, risk[80:], hz)
    aucs = survival_metrics.cumulative_dynamic_auc(time[80:], event[80:], risk[80:], time[:80], event[:80], hz)
    assert np.allclose(aucs, aucs_ref, atol=1e-10)
    assert survival_window.mean_td_auc(aucs, hz, time[80:], event[80:]) == pytest.approx(mean_ref, abs=1e-10)
    assert mean_ref != pytest.approx(np.mean(aucs_ref), abs=1e-6)  # the plain mean is a different number


def test_survival_window_comes_from_training_folds_and_is_the_same_for_every_fold():
    rng = np.random.default_rng(5)
    n = 60
    time = rng.exponential(10, n)
    event = rng.random(n) < 0.7
    y = survival_y(time, event)
    groups = np.arange(n)
    splits = make_splits(event.astype(int), groups, 5, 2, 0)
    ev = survival_window.choose_settings(y, splits)
    lo = max(np.quantile(time[s.train][event[s.train]], 0.1) for s in splits)
    hi = min(np.quantile(time[s.train][event[s.train]], 0.9) for s in splits)
    assert ev.ibs_times[0] == pytest.approx(lo) and ev.ibs_times[-1] == pytest.approx(hi)
    # a configured window and horizons are used as given
    ev2 = survival_window.choose_settings(y, splits, horizons=(5.0, 10.0), ibs_window=(1.0, 20.0))
    assert ev2.horizons == (5.0, 10.0) and ev2.ibs_times[0] == 1.0 and ev2.ibs_times[-1] == 20.0
    # a fold whose follow-up ends inside the window gets no IBS (undefined, counted), never a shorter window
    assert len(survival_window.ibs_times_for_fold(ev2.ibs_times, np.array([3.0, 19.0]))) == 0
    assert len(survival_window.ibs_times_for_fold(ev2.ibs_times, np.array([3.0, 25.0]))) == survival_window.IBS_GRID


def test_pooled_balanced_accuracy_uses_each_training_folds_prevalence():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    # fold 0 tests rows 0-4 (4 positives): training prevalence 1/5 = 0.2; fold 1 tests rows 5-9: training 4/5 = 0.8
    r0 = _fold(0, 0, 0.5, 5, 5)
    r0.test_index, r0.score = np.arange(5), np.array([0.3, 0.3, 0.3, 0.3, 0.1])
    r1 = _fold(0, 1, 0.5, 5, 5)
    r1.test_index, r1.score = np.arange(5, 10), np.array([0.5, 0.5, 0.5, 0.9, 0.5])
    # at 0.2 / 0.8 every test row is right; at the cohort prevalence 0.5 fold 1's negatives would be called positive
    assert pooled.balanced_accuracy_training_prevalence(y, [r0, r1]) == 1.0
    assert probability_metrics.balanced_accuracy(y, np.r_[r0.score, r1.score], 0.5) < 1.0


def test_km_counts_patients_once():
    t, e, g = pooled.patient_level(np.array([5.0, 5.0, 7.0]), np.array([1, 1, 0]), np.array(["high", "low", "low"]),
                                   np.array(["p1", "p1", "p2"]))
    assert list(t) == [5.0, 7.0] and list(e) == [1, 0] and list(g) == ["high", "low"]
    same = pooled.patient_level(np.array([5.0]), np.array([1]), np.array(["low"]), np.array(["p1"]))
    assert list(same[2]) == ["low"]
    pd.testing.assert_series_equal(pd.Series(same[0]), pd.Series([5.0]))


def test_identical_fold_differences_fall_back_to_a_patient_bootstrap():
    """Every fold AUC 1.0 vs 0.5: no zero-width interval and no p ~ 1e-140, a bootstrap interval and a floored p."""
    y = np.tile([0, 1], 20)
    n = len(y)
    rng = np.random.default_rng(6)
    perfect, noise = y + 0.01 * rng.normal(size=n), rng.normal(size=n)
    results = {}
    for name, score, auc in (("learned", perfect, 1.0), ("handcrafted", noise, 0.5)):
        folds = []
        for r in range(2):
            for f in range(5):
                te = np.arange(f * 8, (f + 1) * 8)
                fr = _fold(r, f, auc)
                fr.test_index, fr.score_std = te, score[te]
                folds.append(fr)
        results[(name, "m", False)] = folds

    def oof(res):
        return cv.mean_oof_scores(res, n, standardised=True)

    def stat(yy, a, b):
        return stats.auc_score(yy, a) - stats.auc_score(yy, b)

    df = comparisons.compare("classification", results, "auc", "calibrated", 5, ("learned", "handcrafted"), "holm", oof, stat,
                             lambda a, b, ok: ((y[ok], a[ok], b[ok]), np.arange(n)[ok]), 200, np.random.default_rng(0))
    r = df.iloc[0]
    pooled = stat(y, perfect, noise)  # the pooled out-of-fold difference, which the bootstrap interval is about
    assert r.test == "patient_bootstrap" and r["diff"] == pytest.approx(pooled)
    assert 0 < r.ci_low < r["diff"] < r.ci_high
    assert r.p_raw >= 1 / 201 and r.significant
