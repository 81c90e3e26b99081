"""Survival models and helpers: score test against a loop, Cox/RSF contract, KM risk groups against lifelines."""
import numpy as np
import pytest
from sklearn.base import clone

from radae.evaluate.survival import CoxElasticNet, SurvivalForest, cox_score_z, km_curves, survival_y


def _cox_score_loop(x, time, event):
    """Univariate Cox score test at beta = 0 (Breslow), one event time at a time."""
    u = info = 0.0
    for t in sorted(set(time[event])):
        risk = x[time >= t]
        d = int(((time == t) & event).sum())
        mean = risk.mean()
        u += x[(time == t) & event].sum() - d * mean
        info += d * ((risk**2).mean() - mean**2)
    return u / np.sqrt(info)


def test_cox_score_z_matches_loop_with_ties():
    rng = np.random.default_rng(0)
    n = 40
    X = rng.normal(size=(n, 3))
    time = rng.integers(1, 15, size=n).astype(float)  # many tied times
    event = rng.random(n) < 0.7
    z = cox_score_z(X, survival_y(time, event))
    for j in range(3):
        assert z[j] == pytest.approx(_cox_score_loop(X[:, j], time, event), rel=1e-10)


def test_cox_score_sign_follows_hazard():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = survival_y(rng.exponential(np.exp(-x)), np.ones(200, bool))
    z = cox_score_z(np.column_stack([x, -x]), y)
    assert z[0] > 5 and z[1] < -5


@pytest.mark.parametrize("model", [CoxElasticNet(alpha=0.05), SurvivalForest(n_estimators=30, random_state=0)])
def test_models_rank_risk_and_predict_survival_curves(model):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 4))
    t = rng.exponential(np.exp(-1.5 * X[:, 0]))
    y = survival_y(t, rng.random(120) < 0.8)
    m = clone(model).fit(X, y)
    assert m.score(X, y) > 0.7
    times = np.quantile(t, [0.0, 0.2, 0.5, 0.8]) * [0.5, 1, 1, 1]
    S = m.predict_survival(X, times)
    assert S.shape == (120, 4)
    assert np.all((S >= 0) & (S <= 1))
    assert np.all(np.diff(S, axis=1) <= 1e-12)  # non-increasing in time
    # higher risk -> lower survival at the median time
    risk = m.predict(X)
    assert np.corrcoef(risk, S[:, 2])[0, 1] < -0.5


def test_km_curves_and_logrank_match_lifelines_directly():
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    rng = np.random.default_rng(3)
    t = rng.exponential(1.0, size=60)
    e = rng.random(60) < 0.7
    g = np.where(np.arange(60) < 30, "high", "low")
    t[:30] *= 0.4
    curves, p = km_curves(t, e, g)
    ref = logrank_test(t[:30], t[30:], e[:30], e[30:]).p_value
    assert p == pytest.approx(ref, rel=1e-10)
    high = curves[curves.group == "high"]
    km = KaplanMeierFitter().fit(t[:30], e[:30])
    np.testing.assert_allclose(high.survival.to_numpy(), km.survival_function_.iloc[:, 0].to_numpy())
    assert (high.ci_lower <= high.survival + 1e-12).all() and (high.ci_upper >= high.survival - 1e-12).all()
    assert np.isnan(km_curves(t, e, np.full(60, "low"))[1])
