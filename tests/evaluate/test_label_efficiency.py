"""Label-efficiency subsamples (stratified, nested, inside the training fold, seeded) and the benchmark's table."""
import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from tests.evaluate.benchmark_synth import make_run, pipeline_config

from radae.config import PipelineConfig
from radae.evaluate import cv, folds
from radae.evaluate import label_efficiency as le
from radae.stages.benchmark import run_benchmark

FRACTIONS = (0.1, 0.25, 0.5)


def _cohort(n_patients=60, seed=0):
    """Rows = lesions: some patients have 2 lesions; labels are per patient, 30% positive."""
    rng = np.random.default_rng(seed)
    pats = np.array([f"p{i:03d}" for i in range(n_patients)])
    lab = (rng.random(n_patients) < 0.3).astype(int)
    lab[:3], lab[3:6] = 1, 0
    n_les = 1 + (rng.random(n_patients) < 0.3)
    groups = np.repeat(pats, n_les)
    y = np.repeat(lab, n_les)
    return y, groups


@pytest.fixture(scope="module")
def split_and_subs():
    y, groups = _cohort()
    splits = folds.make_splits(y, groups, folds=5, repeats=2, seed=0)
    subs = le.plan(splits, y, groups, FRACTIONS, repeats=3, cv_repeats=2, seed=4)
    return y, groups, splits, subs


def test_subsamples_stay_inside_the_training_fold_and_never_touch_test_patients(split_and_subs):
    y, groups, splits, subs = split_and_subs
    by_key = {(s.repeat, s.fold): s for s in splits}
    assert len(subs) == len(splits) * 3 * len(FRACTIONS)
    for sub in subs:
        outer = by_key[(sub.split.repeat, sub.split.fold)]
        assert np.array_equal(sub.split.test, outer.test)  # the same outer test fold
        assert set(sub.split.train) <= set(outer.train)
        assert not set(groups[sub.split.train]) & set(groups[outer.test])
        # patients are kept whole: every lesion of a kept patient is in the subsample
        kept = set(groups[sub.split.train])
        assert set(np.flatnonzero(np.isin(groups, list(kept)))) == set(sub.split.train)
        assert sub.n_train_patients == len(kept)


def test_subsamples_are_stratified_by_label(split_and_subs):
    y, groups, splits, subs = split_and_subs
    for sub in subs:
        outer = next(s for s in splits if (s.repeat, s.fold) == (sub.split.repeat, sub.split.fold))
        full = le.patient_strata(y[outer.train], groups[outer.train])
        kept = le.patient_strata(y[sub.split.train], groups[sub.split.train])
        for cls in (0, 1):
            n_s = sum(v == cls for v in full.values())
            want = min(n_s, max(le.MIN_PER_STRATUM, int(np.ceil(sub.fraction * n_s - 1e-9))))
            assert sum(v == cls for v in kept.values()) == want


def test_subsamples_are_nested_across_fractions_and_differ_between_draws(split_and_subs):
    _, groups, _, subs = split_and_subs
    by = {}
    for s in subs:
        by.setdefault((s.split.repeat, s.split.fold, s.repeat), []).append(s)
    for group in by.values():
        group.sort(key=lambda s: s.fraction)
        for a, b in zip(group, group[1:]):
            assert set(a.split.train) <= set(b.split.train)
    half = [frozenset(s.split.train) for s in subs if s.fraction == 0.5 and s.split.repeat == 0 and s.split.fold == 0]
    assert len(set(half)) > 1  # three draws are not the same draw


def test_subsamples_are_seeded_and_deterministic():
    y, groups = _cohort()
    splits = folds.make_splits(y, groups, folds=5, repeats=1, seed=0)
    a = le.plan(splits, y, groups, FRACTIONS, repeats=2, cv_repeats=1, seed=4)
    b = le.plan(splits, y, groups, FRACTIONS, repeats=2, cv_repeats=1, seed=4)
    c = le.plan(splits, y, groups, FRACTIONS, repeats=2, cv_repeats=1, seed=5)
    assert all(np.array_equal(x.split.train, z.split.train) for x, z in zip(a, b))
    assert not all(np.array_equal(x.split.train, z.split.train) for x, z in zip(a, c))


def test_survival_subsamples_are_stratified_by_event():
    rng = np.random.default_rng(1)
    groups = np.array([f"p{i}" for i in range(50)])
    event = rng.random(50) < 0.4
    from radae.evaluate.survival import survival_y

    yy = survival_y(rng.uniform(1, 100, 50), event)
    strata = folds.strata_of(yy)
    sp = folds.make_splits(strata, groups, 5, 1, 0)[0]
    sub = le.subsample_train(sp, strata, groups, (0.25,), 0, 3)[0]
    n_ev = int(event[sp.train].sum())
    assert int(event[sub.split.train].sum()) == max(2, int(np.ceil(0.25 * n_ev)))


def test_config_rejects_bad_fractions():
    base = {"name": "x", "data": {"synth": {"cases": 8}}}
    with pytest.raises(ValidationError, match="label fraction 0.0 is not in"):
        PipelineConfig.model_validate({**base, "benchmark": {"label_fractions": [0.0, 0.5]}})
    assert PipelineConfig.model_validate({**base, "benchmark": {"label_fractions": [1.0, 0.25]}}).benchmark.label_fractions == (0.25, 1.0)


@pytest.mark.slow
def test_benchmark_writes_label_efficiency_with_same_test_folds(tmp_path):
    run_dir = tmp_path / "le"
    make_run(run_dir, n_patients=48, seed=2)
    cfg = pipeline_config(run_dir, feature_sets=["learned", "volume"], label_fractions=[0.25, 0.5, 1.0], label_repeats=2,
                          shuffled_control=False, bootstrap=0,
                          cv={"folds": 3, "repeats": 2, "inner_folds": 2, "seed": 0})
    summary = run_benchmark(run_dir, cfg, 0, lambda c, m, f: None, run_dir / "benchmark")
    t = pd.read_parquet(run_dir / "benchmark" / "label_efficiency.parquet")
    assert set(le.COLUMNS) <= set(t.columns)
    auc = t[t["metric"] == "auc"]
    assert set(auc["set"]) == {"learned", "volume"}
    assert sorted(auc["fraction"].unique()) == [0.25, 0.5, 1.0]
    # fractions < 1: folds x draws of the first outer repeat; 1.0: the main CV's folds of that repeat
    assert (auc[auc["fraction"] < 1].groupby(["set", "fraction"]).size() == 3 * 2).all()
    assert (auc[auc["fraction"] == 1].groupby("set").size() == 3).all()
    assert set(auc["cv_repeat"]) == {0}
    # more labelled patients at larger fractions; the test fold size is the same at every fraction
    n = auc.groupby("fraction")["n_train_patients"].mean()
    assert n.is_monotonic_increasing and n[0.25] < n[1.0]
    assert auc.groupby(["fold"])["n_test"].nunique().max() == 1
    # fraction 1.0 equals the benchmark's own fold AUCs
    cvr = pd.read_parquet(run_dir / "benchmark" / "cv_results.parquet")
    main = cvr[(cvr.metric == "auc") & (cvr.fold >= 0) & (cvr.repeat == 0) & (~cvr.control) & (cvr.feature_set == "learned")]
    full = auc[(auc.fraction == 1.0) & (auc.set == "learned")].sort_values("fold")
    assert np.allclose(full["value"].to_numpy(), main.sort_values("fold")["value"].to_numpy())
    # the planted signal is learned better with more labels
    s = summary["label_efficiency"]
    assert s["status"] == "done"
    pts = {p["fraction"]: p for p in s["classification"]["sets"]["learned"]["logistic_l2"]}
    assert pts[1.0]["mean"] > 0.7
    assert pts[0.25]["ci_low"] <= pts[0.25]["mean"] <= pts[0.25]["ci_high"]
    json.dumps(summary)


def test_benchmark_without_fractions_writes_no_table(tmp_path):
    run_dir = tmp_path / "off"
    make_run(run_dir, n_patients=30, seed=0)
    cfg = pipeline_config(run_dir, feature_sets=["volume"])
    summary = run_benchmark(run_dir, cfg, 0, lambda c, m, f: None, run_dir / "benchmark")
    assert not (run_dir / "benchmark" / "label_efficiency.parquet").exists()
    assert summary["label_efficiency"]["status"] == "skipped"


def test_a_subsample_that_cannot_be_fitted_is_a_missing_value_not_a_crash():
    from radae.util.errors import BenchmarkError

    y, groups = _cohort()
    splits = folds.make_splits(y, groups, folds=3, repeats=1, seed=0)
    subs = le.plan(splits, y, groups, (0.25, 0.5), repeats=1, cv_repeats=1, seed=0)
    ok = cv.FoldResult(0, 0, {"auc": 0.7}, np.array([0]), np.zeros(1), np.zeros(1), np.array([""]), {}, 1, 10, 5)

    def fit(sps):
        if any(len(s.train) < 20 for s in sps):
            raise BenchmarkError("every hyperparameter setting failed")
        return [ok for _ in sps]

    t = le.run_set(np.zeros((len(y), 1)), y, groups, subs, [], None, 0, {"task": "classification", "set": "x", "model": "m"},
                   1, False, fit)
    small = t[t.fraction == 0.25]  # ~13 training rows: the stand-in fit refuses
    assert len(small) == 3 and small["value"].isna().all() and (small["metric"] == "auc").all()
    assert (t.loc[t.fraction == 0.5, "value"] == 0.7).all()
    c = le.curves(t, "auc")
    assert (c["n_values"] <= 3).all()


def test_curve_intervals_of_bounded_metrics_stay_in_0_1():
    t = pd.DataFrame({"task": "classification", "set": "s", "model": "m", "fraction": 0.1, "n_train_patients": 6,
                      "n_train": 6, "n_test": 8, "cv_repeat": 0, "fold": range(5), "repeat": 0, "metric": "auc",
                      "value": [0.2, 0.9, 1.0, 0.4, 0.8]})
    c = le.curves(t, "auc").iloc[0]
    assert 0.0 <= c.ci_low < c["mean"] < c.ci_high <= 1.0 and c.ci_low == 0.0 and c.ci_high == 1.0


def test_random_streams_of_the_benchmark_are_distinct():
    """Every generator seeded from (seed, cv seed, stream id) has its own id: no two analyses share random draws."""
    from radae.evaluate import curves, external, label_efficiency, tasks

    ids = {n: getattr(m, n) for m in (tasks, curves, external, label_efficiency) for n in dir(m) if n.endswith("_STREAM")}
    assert len(ids) >= 7 and len(set(ids.values())) == len(ids), ids
