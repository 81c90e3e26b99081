"""Latent-handcrafted redundancy: Spearman matrix against scipy, table and summary."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from radae.evaluate.redundancy import redundancy_summary, redundancy_table, spearman_matrix


def test_spearman_matrix_matches_scipy_with_ties_and_nans():
    rng = np.random.default_rng(0)
    A = np.round(rng.normal(size=(30, 3)), 1)
    B = np.column_stack([A[:, 0] ** 3, rng.normal(size=30), np.round(rng.normal(size=30))])
    B[4, 1] = np.nan
    got = spearman_matrix(A, B)
    ok = np.isfinite(B).all(axis=1)
    for i in range(3):
        for j in range(3):
            assert got[i, j] == pytest.approx(spearmanr(A[ok, i], B[ok, j]).statistic, abs=1e-12)
    assert got[0, 0] == pytest.approx(1.0)  # monotone transform


def test_redundancy_table_and_summary_find_the_mirrored_feature_and_volume():
    rng = np.random.default_rng(1)
    vol = pd.Series(rng.lognormal(size=50), name="lesion_volume_ml(log)")
    latent = pd.DataFrame({"latent_000": np.log(vol) + 0.05 * rng.normal(size=50), "latent_001": rng.normal(size=50)})
    hc = pd.DataFrame({"original_glcm_Contrast": latent["latent_001"] ** 3, "original_firstorder_Mean": rng.normal(size=50)})
    table = redundancy_table(latent, hc, vol)
    assert len(table) == 2 * 3
    best = table.loc[table.groupby("latent")["abs_rho"].idxmax()].set_index("latent")
    assert best.loc["latent_000", "feature"] == "lesion_volume_ml(log)"
    assert best.loc["latent_001", "feature"] == "original_glcm_Contrast"
    assert table.is_volume.sum() == 2
    s = redundancy_summary(table)
    assert s["n_latent"] == 2 and s["n_handcrafted"] == 3
    assert s["fraction_latent_max_abs_rho_ge_0_8"] == 1.0
    assert s["volume_max_abs_rho"] > 0.95 and s["fraction_latent_volume_abs_rho_ge_0_5"] == 0.5
