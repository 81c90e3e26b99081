"""Survival calibration and decision curves at a horizon, against dcurves and lifelines."""
import numpy as np
import pandas as pd
import pytest

from radae.evaluate import survival_utility as su
from radae.evaluate.survival import survival_y


def _cohort(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    rate = 0.1 * np.exp(0.8 * x)
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(0, 25, n)
    time = np.minimum(t_event, t_cens)
    event = t_event <= t_cens
    return x, rate, time, event


def test_km_risk_matches_lifelines_and_is_nan_beyond_follow_up():
    from lifelines import KaplanMeierFitter

    _, _, time, event = _cohort()
    ref = 1 - float(KaplanMeierFitter().fit(time, event).survival_function_at_times(6.0).iloc[0])
    assert su.km_risk(time, event, 6.0) == pytest.approx(ref, abs=1e-12)
    assert np.isnan(su.km_risk(time, event, time.max() + 1)) and np.isnan(su.km_risk(time[:0], event[:0], 1.0))


def test_net_benefit_matches_dcurves_survival_dca():
    dcurves = pytest.importorskip("dcurves")
    x, rate, time, event = _cohort(seed=1)
    t = 6.0
    risk = 1 - np.exp(-rate * t)  # the true risk by t
    th = np.round(np.arange(0.05, 0.95, 0.05), 2)
    ours = su.net_benefit_table(time, event, risk, t, th)
    ref = dcurves.dca(data=pd.DataFrame({"time": time, "event": event.astype(int), "risk": risk}), outcome="event",
                      modelnames=["risk"], thresholds=th, time=t, time_to_outcome_col="time")
    for strategy, name in (("model", "risk"), ("all", "all"), ("none", "none")):
        a = ours[ours["strategy"] == strategy]["net_benefit"].to_numpy(dtype=float)
        b = ref[ref["model"] == name]["net_benefit"].to_numpy(dtype=float)
        assert np.allclose(a, b, atol=1e-12, equal_nan=True), strategy
    model = ours[ours["strategy"] == "model"]["net_benefit"].to_numpy()
    assert (model[1:6] > ours[ours["strategy"] == "all"]["net_benefit"].to_numpy()[1:6]).all()  # the true risk is useful


def test_calibration_of_the_true_risk_lies_on_the_diagonal():
    x, rate, time, event = _cohort(n=3000, seed=2)
    t = 5.0
    risk = 1 - np.exp(-rate * t)
    cal = su.calibration_table(time, event, risk, t)
    assert len(cal) == 10 and cal["n"].sum() == 3000
    assert np.max(np.abs(cal["observed"] - cal["predicted"])) < 0.06
    wrong = su.calibration_table(time, event, np.clip(risk * 2, 0, 1), t)  # twice the risk: above the diagonal
    assert (wrong["predicted"] > wrong["observed"]).mean() >= 0.8


def test_horizon_from_config_or_development_events():
    y = survival_y([1.0, 2.0, 3.0, 10.0], [1, 1, 0, 1])
    assert su.horizon(y, (4.0, 8.0)) == 8.0 and su.horizon(y) == 2.0
    assert np.isnan(su.horizon(survival_y([1.0], [0])))
