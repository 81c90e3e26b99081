"""ComBat (radae.evaluate.harmonise) against neuroCombat, and a planted site effect inside the fold pipeline."""
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from radae.util.errors import BenchmarkError
from radae.evaluate import cv, folds, models
from radae.evaluate.harmonise import ComBat, batch_codes, with_batch


def _sites(n=120, p=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    site = rng.integers(0, 2, n)
    X = rng.normal(size=(n, p))
    X[:, :3] += 1.2 * y[:, None]  # biological signal in 3 features
    X = X * np.where(site[:, None] == 1, 1.8, 1.0) + np.where(site[:, None] == 1, 2.5, 0.0)  # site: shift + scale
    return X, y, site


def test_matches_neurocombat():
    neuroCombat = pytest.importorskip("neuroCombat").neuroCombat
    X, _, site = _sites(n=90, p=12, seed=1)
    ref = neuroCombat(dat=pd.DataFrame(X.T), covars=pd.DataFrame({"site": site}), batch_col="site")["data"].T
    ours = ComBat().fit_transform(np.column_stack([X, site]))
    assert np.max(np.abs(ours - ref)) < 1e-6, np.max(np.abs(ours - ref))


def test_transform_uses_training_estimates_only_and_refuses_unseen_batch():
    X, _, site = _sites()
    A = np.column_stack([X, site])
    m = ComBat().fit(A[:80])
    before = m.transform(A[80:])
    A2 = A.copy()
    A2[80:90, :-1] += 50.0  # changing other test rows changes nothing for the rest
    assert np.allclose(m.transform(A2[80:])[10:], before[10:])
    bad = A[:5].copy()
    bad[:, -1] = 7
    with pytest.raises(BenchmarkError, match="not in the training rows"):
        m.transform(bad)


def test_forced_columns_pass_through_and_nan_stays_nan():
    X, _, site = _sites()
    X[3, 4] = np.nan
    cols = np.ones(X.shape[1], dtype=bool)
    cols[0] = False
    out = ComBat(columns=cols).fit_transform(np.column_stack([X, site]))
    assert np.array_equal(out[:, 0], X[:, 0]) and np.isnan(out[3, 4]) and np.isfinite(out[:, 1:]).sum() == X[:, 1:].size - 1


def test_planted_site_effect_removed_inside_folds_signal_kept():
    X, y, site = _sites()
    tr, te = np.arange(0, 80), np.arange(80, 120)

    def site_auc(F_tr, F_te):
        return roc_auc_score(site[te], LogisticRegression(max_iter=1000).fit(F_tr, site[tr]).predict_proba(F_te)[:, 1])

    assert site_auc(X[tr], X[te]) > 0.95  # the site is obvious in the raw features
    A = np.column_stack([X, site])
    m = ComBat().fit(A[tr])
    H_tr, H_te = m.transform(A[tr]), m.transform(A[te])
    assert site_auc(H_tr, H_te) < 0.7
    # the biological signal survives, through the real fold pipeline (ComBat first, then the usual chain)
    X2, forced, _ = with_batch(X, np.zeros(X.shape[1], bool), site)
    spec = models.PipelineSpec(task="classification", model="logistic_l2", max_features=5, harmonise=True)
    splits = folds.make_splits(y, np.arange(len(y)).astype(str), 3, 1, 0)
    res = cv.cross_validate(X2, y, np.arange(len(y)).astype(str), splits, spec, seed=0, forced=forced)
    assert np.mean([r.metrics["auc"] for r in res]) > 0.8
    assert all(r.n_features == X.shape[1] for r in res)
    site_res = cv.cross_validate(X2, site, np.arange(len(y)).astype(str), folds.make_splits(site, np.arange(len(y)).astype(str), 3, 1, 0),
                                 spec, seed=0, forced=forced)
    assert np.mean([r.metrics["auc"] for r in site_res]) < 0.7


def test_batch_codes_errors():
    with pytest.raises(BenchmarkError, match="one value"):
        batch_codes(pd.Series(["a", "a"]), "site")
    with pytest.raises(BenchmarkError, match="empty"):
        batch_codes(pd.Series(["a", None]), "site")
    codes, labels = batch_codes(pd.Series(["b", "a", "b"]), "site")
    assert labels == ["a", "b"] and codes.tolist() == [1.0, 0.0, 1.0]


def test_unseen_batch_left_unchanged_in_identity_mode():
    X, _, site = _sites()
    A = np.column_stack([X, site])
    m = ComBat(unseen="identity").fit(A[site == 0])
    out = m.transform(A)
    assert np.array_equal(out[site == 1], X[site == 1])
    assert np.allclose(out[site == 0], ComBat().fit(A[site == 0]).transform(A[site == 0]))


def test_permutation_test_refits_the_same_combat_pipeline(monkeypatch):
    """Every nested CV of a harmonised task, the permutation test's included, fits ComBat inside its folds."""
    from radae.config import BenchmarkConfig
    from radae.evaluate import tasks
    from radae.evaluate.cohort import Cohort, FeatureSet

    X, y, site = _sites(n=60, p=4, seed=2)
    ids = np.array([f"p{i:02d}" for i in range(60)], dtype=object)
    rows = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y, "site": np.where(site == 1, "b", "a")})
    sets = {n: FeatureSet(n, [f"{n}_{j}" for j in range(4)], X + k, np.zeros(4, bool)) for k, n in enumerate(("learned", "handcrafted"))}
    codes, labels = batch_codes(rows["site"], "site")
    cohort = Cohort(rows=rows, sets=sets, unit="patient", cohort="all", lesions=rows[["case_id", "patient_id"]].assign(row=np.arange(60)),
                    batch=codes, batch_labels=labels)
    bcfg = BenchmarkConfig(classification={"label": "label"}, feature_sets=("learned", "handcrafted"), bootstrap=20, permutations=2,
                           shuffled_control=False, harmonise={"batch": "site"}, cv={"folds": 3, "repeats": 1, "inner_folds": 2, "seed": 0})
    seen = []
    real = cv.cross_validate

    def spy(X_, y_, groups, splits, spec, **kw):
        seen.append((spec.harmonise, X_.shape[1], np.array_equal(X_[:, -1], codes)))
        return real(X_, y_, groups, splits, spec, **kw)

    monkeypatch.setattr(cv, "cross_validate", spy)
    out = tasks.evaluate_classification(cohort, bcfg, 0, {}, lambda c, m, f: None)
    assert out.block["primary"]["permutation"]["status"] == "done"
    assert len(seen) == 2 + 2 * 2  # two sets in the real run, then two permutations of each
    assert all(s == (True, 5, True) for s in seen), seen
