"""Statistics against independent references: hand-worked examples, loop implementations, lifelines, scikit-survival."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from radae.evaluate import bootstrap, multiplicity, probability_metrics, stats, survival_metrics


# ----------------------------------------------------------------------------- AUC / DeLong
def _delong_loops(y, a, b):
    """DeLong et al. (1988) straight from the definition: psi kernel, structural components, 2x2 covariances."""
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]

    def psi(x, z):
        return 1.0 if x > z else (0.5 if x == z else 0.0)

    comps10, comps01, aucs = [], [], []
    for s in (a, b):
        v10 = [sum(psi(s[i], s[j]) for j in neg) / len(neg) for i in pos]
        v01 = [sum(psi(s[i], s[j]) for i in pos) / len(pos) for j in neg]
        comps10.append(v10)
        comps01.append(v01)
        aucs.append(sum(v10) / len(pos))

    def cov(u, v):
        mu, mv = sum(u) / len(u), sum(v) / len(v)
        return sum((x - mu) * (z - mv) for x, z in zip(u, v)) / (len(u) - 1)

    var = (cov(comps10[0], comps10[0]) + cov(comps10[1], comps10[1]) - 2 * cov(comps10[0], comps10[1])) / len(pos) + (
        cov(comps01[0], comps01[0]) + cov(comps01[1], comps01[1]) - 2 * cov(comps01[0], comps01[1])
    ) / len(neg)
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return aucs[0], aucs[1], z, math.erfc(abs(z) / math.sqrt(2.0))


def test_auc_hand_worked():
    # positives .9 .8 .4 vs negatives .5 .3 .1: .9 and .8 beat all three, .4 beats two -> 8/9
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.1])
    assert stats.auc_score(y, s) == pytest.approx(8 / 9)
    # a tie between a positive and a negative counts one half
    assert stats.auc_score(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(stats.auc_score(np.array([1, 1]), np.array([0.1, 0.2])))


def test_delong_matches_definition_on_fixed_example():
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0])
    a = np.array([0.9, 0.8, 0.7, 0.65, 0.3, 0.6, 0.2, 0.35, 0.1, 0.4, 0.5, 0.55, 0.45, 0.95, 0.05])
    b = np.array([0.6, 0.9, 0.3, 0.5, 0.5, 0.5, 0.4, 0.2, 0.3, 0.7, 0.1, 0.8, 0.6, 0.4, 0.2])  # ties on purpose
    ref = _delong_loops(y, a, b)
    got = stats.delong_test(y, a, b)
    assert got.auc_a == pytest.approx(ref[0], abs=1e-12)
    assert got.auc_b == pytest.approx(ref[1], abs=1e-12)
    assert got.z == pytest.approx(ref[2], rel=1e-10)
    assert got.p_value == pytest.approx(ref[3], rel=1e-10)


def test_delong_random_examples_and_symmetry():
    rng = np.random.default_rng(3)
    for _ in range(3):
        y = rng.integers(0, 2, size=40)
        a = y + rng.normal(size=40)
        b = np.round(y * 0.5 + rng.normal(size=40), 1)
        ref = _delong_loops(y, a, b)
        got = stats.delong_test(y, a, b)
        assert got.p_value == pytest.approx(ref[3], rel=1e-9)
        assert stats.delong_test(y, b, a).p_value == pytest.approx(got.p_value)
    assert stats.delong_test(y, a, a).p_value == 1.0


def test_delong_ci_contains_auc_and_is_ordered():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=60)
    s = y + rng.normal(size=60)
    auc, lo, hi = stats.delong_ci(y, s)
    assert lo < auc < hi
    assert auc == pytest.approx(stats.auc_score(y, s))


# ----------------------------------------------------------------------------- survival metrics
def test_harrell_c_hand_worked():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    e = np.array([1, 0, 1, 1, 0])
    # comparable pairs: (0,1..4), (2,3), (2,4), (3,4) = 7; all concordant except (3,4)
    assert survival_metrics.harrell_c(t, e, np.array([5.0, 3.0, 4.0, 1.0, 2.0])) == pytest.approx(6 / 7)
    # a tie in risk for (3,4) counts one half
    assert survival_metrics.harrell_c(t, e, np.array([5.0, 3.0, 4.0, 2.0, 2.0])) == pytest.approx(6.5 / 7)


def test_harrell_c_matches_lifelines():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(1)
    for _ in range(3):
        n = 50
        t = rng.permutation(np.arange(1, n + 1)).astype(float)  # distinct times
        e = rng.random(n) < 0.6
        risk = np.round(rng.normal(size=n) - 0.02 * t, 1)  # ties in risk
        ref = concordance_index(t, -risk, e)  # lifelines scores are predicted survival times
        assert survival_metrics.harrell_c(t, e, risk) == pytest.approx(ref, abs=1e-12)


def _surv(t, e):
    y = np.empty(len(t), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = e, t
    return y


def test_uno_c_td_auc_ibs_match_scikit_survival():
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    rng = np.random.default_rng(2)
    n = 80
    x = rng.normal(size=n)
    t_ev = rng.exponential(np.exp(-x))
    t_c = rng.exponential(1.5, size=n)
    t = np.round(np.minimum(t_ev, t_c), 3) + 1e-3
    e = t_ev <= t_c
    risk = x + 0.5 * rng.normal(size=n)
    train_t, train_e = t[:50], e[:50]
    test_t, test_e, test_r = t[50:], e[50:], risk[50:]
    tau = float(np.quantile(test_t, 0.8))
    ref_uno = sksurv_metrics.concordance_index_ipcw(_surv(train_t, train_e), _surv(test_t, test_e), test_r, tau=tau)[0]
    assert survival_metrics.uno_c(test_t, test_e, test_r, train_t, train_e, tau=tau) == pytest.approx(ref_uno, rel=1e-10)
    # no censoring at all: Uno's C is Harrell's C
    assert survival_metrics.uno_c(t, np.ones(n, bool), risk, t, np.ones(n, bool)) == pytest.approx(survival_metrics.harrell_c(t, np.ones(n, bool), risk))

    times = np.quantile(test_t[test_e], [0.3, 0.5, 0.7])
    ref_auc, _ = sksurv_metrics.cumulative_dynamic_auc(_surv(train_t, train_e), _surv(test_t, test_e), test_r, times)
    got = survival_metrics.cumulative_dynamic_auc(test_t, test_e, test_r, train_t, train_e, times)
    np.testing.assert_allclose(got, ref_auc, rtol=1e-10)

    grid = np.linspace(np.quantile(test_t, 0.1), np.quantile(test_t, 0.7), 15)
    surv = np.exp(-np.exp(test_r)[:, None] * grid[None, :])  # some S(t | x)
    ref_ibs = sksurv_metrics.integrated_brier_score(_surv(train_t, train_e), _surv(test_t, test_e), surv, grid)
    assert survival_metrics.integrated_brier_score(test_t, test_e, surv, grid, train_t, train_e) == pytest.approx(ref_ibs, rel=1e-10)


def test_kaplan_meier_hand_worked():
    # times 1,2,2,3,4 with events 1,1,0,1,0: S(1)=4/5, S(2)=4/5*3/4=0.6, S(3)=0.6*1/2=0.3, S(4)=0.3
    knots, s = survival_metrics.kaplan_meier(np.array([1, 2, 2, 3, 4.0]), np.array([1, 1, 0, 1, 0]))
    np.testing.assert_allclose(knots, [1, 2, 3, 4])
    np.testing.assert_allclose(s, [0.8, 0.6, 0.3, 0.3])


# ----------------------------------------------------------------------------- calibration
def test_calibration_slope_recovers_known_miscalibration():
    rng = np.random.default_rng(0)
    lp = rng.normal(0, 1.5, size=20000)
    y = (rng.random(lp.size) < 1 / (1 + np.exp(-lp))).astype(int)
    slope, intercept = probability_metrics.calibration_slope_intercept(y, 1 / (1 + np.exp(-lp)))
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)
    # predictions twice as extreme -> slope 1/2; shifted by -1 on the logit scale -> intercept +1
    slope2, _ = probability_metrics.calibration_slope_intercept(y, 1 / (1 + np.exp(-2 * lp)))
    _, intercept2 = probability_metrics.calibration_slope_intercept(y, 1 / (1 + np.exp(-(lp - 1))))
    assert slope2 == pytest.approx(0.5, abs=0.03)
    assert intercept2 == pytest.approx(1.0, abs=0.06)


def test_calibration_separated_data_is_nan_not_a_number_from_nowhere():
    slope, _ = probability_metrics.calibration_slope_intercept(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert math.isnan(slope)


def test_brier_and_balanced_accuracy():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.4, 0.6])
    assert probability_metrics.brier_score(y, p) == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    # threshold 0.5: sensitivity 1/2, specificity 1/2
    assert probability_metrics.balanced_accuracy(y, p, 0.5) == pytest.approx(0.5)
    assert probability_metrics.balanced_accuracy(y, p, 0.3) == pytest.approx(0.5 * (1.0 + 0.5))


# ----------------------------------------------------------------------------- resampling
def test_corrected_resampled_ttest_hand_worked():
    d = [0.1, 0.2, 0.0, 0.1]
    res = stats.corrected_resampled_ttest(d, n_train=80, n_test=20)
    # s^2 = 0.02/3; corrected variance (1/4 + 20/80) s^2 = s^2 / 2
    se = math.sqrt(0.5 * 0.02 / 3)
    assert res.mean == pytest.approx(0.1)
    assert res.se == pytest.approx(se)
    assert res.t == pytest.approx(0.1 / se)
    assert res.df == 3
    assert res.p_value == pytest.approx(2 * sps.t.sf(0.1 / se, 3))
    q = sps.t.ppf(0.975, 3)
    assert (res.ci_low, res.ci_high) == pytest.approx((0.1 - q * se, 0.1 + q * se))
    # the correction makes it more conservative than the naive paired t-test
    assert res.p_value > sps.ttest_1samp(d, 0.0).pvalue


def test_bootstrap_resamples_whole_clusters():
    groups = np.array(["a", "a", "a", "b", "c"])
    x = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    sizes = []

    def stat(v):
        sizes.append(len(v))
        return float(v.mean())

    res = bootstrap.bootstrap_ci(stat, (x,), groups, 200, np.random.default_rng(0))
    # every resample is a union of whole clusters: its length is a sum of three cluster sizes (3 or 1 each)
    assert set(sizes[1:]) <= {3, 5, 7, 9}
    assert res.estimate == pytest.approx(0.6)
    assert 0.0 <= res.ci_low <= res.estimate <= res.ci_high <= 1.0
    assert res.n_valid == 200


def test_bootstrap_is_reproducible_with_the_same_seed():
    rng_data = np.random.default_rng(5)
    y = rng_data.integers(0, 2, 50)
    s = y + rng_data.normal(size=50)
    r1 = bootstrap.bootstrap_ci(stats.auc_score, (y, s), None, 100, np.random.default_rng(1))
    r2 = bootstrap.bootstrap_ci(stats.auc_score, (y, s), None, 100, np.random.default_rng(1))
    assert r1 == r2


def test_holm_and_bh_hand_worked():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted .005,.01,.03,.04 x 4,3,2,1 = .02,.03,.06,.04 -> running max .02,.03,.06,.06
    np.testing.assert_allclose(multiplicity.holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted x 4/i = .02,.02,.04,.04 -> running min from the top leaves them
    np.testing.assert_allclose(multiplicity.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    out = multiplicity.adjust_pvalues([0.5, float("nan"), 0.01], "holm")
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.5, 0.02])
