"""radae's multiplicity adjustment and calibration GLM against statsmodels (the reference a statistician would use)."""
from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from radae.evaluate.multiplicity import adjust_pvalues
from radae.evaluate.probability_metrics import calibration_slope_intercept, logit


@pytest.mark.parametrize("method, ref", [("holm", "holm"), ("bh", "fdr_bh")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adjusted_p_values_equal_statsmodels_multipletests(method, ref, seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.05, 4), rng.uniform(0, 1, 11), [0.03, 0.03]])  # ties included
    ours = adjust_pvalues(p, method)
    theirs = multipletests(p, alpha=0.05, method=ref)[1]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_nans_are_left_out_of_the_family_as_statsmodels_would_without_them():
    p = np.array([0.01, np.nan, 0.04, 0.2, np.nan, 0.5])
    ok = np.isfinite(p)
    ours = adjust_pvalues(p, "holm")
    assert np.isnan(ours[~ok]).all()
    np.testing.assert_allclose(ours[ok], multipletests(p[ok], method="holm")[1], atol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_calibration_slope_and_intercept_equal_a_statsmodels_binomial_glm(seed):
    rng = np.random.default_rng(seed)
    n = 400
    lp_true = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-lp_true))).astype(float)
    prob = 1 / (1 + np.exp(-(0.3 + 1.6 * lp_true)))  # over-confident and shifted predictions
    slope, intercept = calibration_slope_intercept(y, prob)
    lp = logit(prob)
    fam = sm.families.Binomial()
    ref_slope = sm.GLM(y, sm.add_constant(lp), family=fam).fit().params[1]
    ref_icpt = sm.GLM(y, np.ones((n, 1)), family=fam, offset=lp).fit().params[0]
    assert slope == pytest.approx(ref_slope, abs=1e-8)
    assert intercept == pytest.approx(ref_icpt, abs=1e-8)
    assert slope < 1  # the planted over-confidence is detected
