"""ROC points and calibration bins: what the benchmark writes for the report, checked against scikit-learn."""
import numpy as np
import pandas as pd
import pytest
from tests.evaluate.benchmark_synth import make_run, pipeline_config
from sklearn.metrics import roc_auc_score, roc_curve

from radae.evaluate.curves import (BAND_COLUMNS, CALIBRATION_COLUMNS, FPR_GRID, ROC_COLUMNS, curve_tables, patient_band,
                                   roc_bands, step_tpr)
from radae.stages.benchmark import run_benchmark


def _predictions(rng: np.random.Generator) -> pd.DataFrame:
    """Two sets x two models x two repeats, a control and survival rows that must be left out."""
    frames = []
    for fset in ("learned", "volume"):
        for model in ("logistic_l2", "svm"):
            for repeat in (0, 1):
                for control in (False, True):
                    y = rng.integers(0, 2, size=47).astype(float)
                    s = 1 / (1 + np.exp(-(y + rng.normal(size=47))))
                    s[3] = np.nan  # a row without a prediction is left out
                    frames.append(pd.DataFrame({"task": "classification", "feature_set": fset, "model": model, "control": control,
                                                "repeat": repeat, "label": y, "score": s}))
    frames.append(pd.DataFrame({"task": "survival", "feature_set": "learned", "model": "cox_enet", "control": False, "repeat": 0,
                                "label": np.nan, "score": rng.normal(size=20)}))
    return pd.concat(frames, ignore_index=True)


def _check_against_sklearn(preds: pd.DataFrame, roc: pd.DataFrame, cal: pd.DataFrame) -> None:
    first = preds[(preds.task == "classification") & ~preds.control.astype(bool) & (preds.repeat == preds.repeat.min())]
    pairs = list(first.groupby(["feature_set", "model"], sort=False).groups)
    assert list(roc.columns) == ROC_COLUMNS and list(cal.columns) == CALIBRATION_COLUMNS
    assert list(dict.fromkeys(zip(roc.feature_set, roc.model))) == pairs
    assert set(roc.task) == {"classification"} and set(roc.repeat) == {0} and set(cal.repeat) == {0}
    for (fset, model), g in first.groupby(["feature_set", "model"], sort=False):
        ok = np.isfinite(g.label.to_numpy(float)) & np.isfinite(g.score.to_numpy(float))
        y, s = g.label.to_numpy(float)[ok], g.score.to_numpy(float)[ok]
        fpr, tpr, _ = roc_curve(y, s)
        r = roc[(roc.feature_set == fset) & (roc.model == model)].sort_values("point")
        np.testing.assert_array_equal(r.fpr.to_numpy(), fpr)
        np.testing.assert_array_equal(r.tpr.to_numpy(), tpr)
        assert list(r.point) == list(range(len(fpr)))
        assert (r.n == len(y)).all() and r.auc.iloc[0] == pytest.approx(roc_auc_score(y, s))
        c = cal[(cal.feature_set == fset) & (cal.model == model)]
        assert c["count"].sum() == len(y) and c["bin"].is_monotonic_increasing
        assert 3 <= len(c) <= 10
        assert np.average(c.mean_predicted, weights=c["count"]) == pytest.approx(s.mean())
        assert np.average(c.observed, weights=c["count"]) == pytest.approx(y.mean())


def test_curve_tables_match_sklearn_on_a_predictions_table():
    preds = _predictions(np.random.default_rng(0))
    roc, cal = curve_tables(preds)
    assert len(roc.groupby(["feature_set", "model"])) == 4
    _check_against_sklearn(preds, roc, cal)


def test_no_classification_rows_give_empty_tables_with_the_columns():
    preds = _predictions(np.random.default_rng(1))
    roc, cal = curve_tables(preds[preds.task == "survival"])
    assert roc.empty and cal.empty
    assert list(roc.columns) == ROC_COLUMNS and list(cal.columns) == CALIBRATION_COLUMNS


def test_benchmark_stage_writes_roc_points_and_calibration_bins(tmp_path):
    run_dir = tmp_path / "curves"
    make_run(run_dir, n_patients=30, seed=0)
    cfg = pipeline_config(run_dir, feature_sets=["learned", "volume"], shuffled_control=False, bootstrap=0,
                          cv={"folds": 3, "repeats": 2, "inner_folds": 2, "seed": 0})
    run_benchmark(run_dir, cfg, 0, lambda c, m, f: None, run_dir / "benchmark")
    out = run_dir / "benchmark"
    roc = pd.read_parquet(out / "roc_points.parquet")
    cal = pd.read_parquet(out / "calibration_bins.parquet")
    preds = pd.read_parquet(out / "predictions.parquet")
    assert set(roc.feature_set) == {"learned", "volume"} and set(roc.model) == {"logistic_l2"}
    _check_against_sklearn(preds, roc, cal)
    bands = pd.read_parquet(out / "roc_bands.parquet")  # benchmark.bootstrap = 0: no bands, the file still written
    assert bands.empty and list(bands.columns) == BAND_COLUMNS


# ----------------------------------------------------------------------------- ROC bands
def _patients(rng: np.random.Generator, n_patients: int = 80) -> pd.DataFrame:
    """Patients with 1-3 lesions sharing label and a patient effect (correlated rows); two sets x two models + a control."""
    rows = []
    for p in range(n_patients):
        y, u = float(rng.random() < 0.4), rng.normal()
        for _ in range(rng.integers(1, 4)):
            for fset, signal in (("learned", 1.5), ("volume", 0.5)):
                for model in ("logistic_l2", "svm"):
                    for control in (False, True):
                        s = 1 / (1 + np.exp(-(signal * y * (not control) + u + 0.5 * rng.normal())))
                        rows.append({"task": "classification", "feature_set": fset, "model": model, "control": control,
                                     "repeat": 0, "patient_id": f"p{p}", "label": y, "score": s})
    return pd.DataFrame(rows)


def _grid_roc(y, s):
    """The step-function ROC of sklearn's roc_curve at every grid FPR (largest TPR with FPR <= f)."""
    fpr, tpr, _ = roc_curve(y, s)
    return np.array([tpr[fpr <= f + 1e-12].max() for f in FPR_GRID])


def test_step_tpr_of_weighted_rows_equals_roc_curve_of_the_repeated_rows():
    rng = np.random.default_rng(4)
    y = (rng.random(90) < 0.4).astype(float)
    s = np.round(y + rng.normal(size=90), 1)  # ties
    w = rng.integers(0, 3, size=90)
    idx = np.repeat(np.arange(90), w)
    np.testing.assert_array_equal(step_tpr(y, s, FPR_GRID, w), _grid_roc(y[idx], s[idx]))
    np.testing.assert_array_equal(step_tpr(y, s, FPR_GRID), _grid_roc(y, s))
    assert np.isnan(step_tpr(np.ones(5), np.arange(5.0), FPR_GRID)).all()


def test_roc_band_contains_the_full_sample_roc_and_is_monotone():
    preds = _patients(np.random.default_rng(0))
    bands = roc_bands(preds, ["learned"], 300, 0, 0)
    assert list(bands.columns) == BAND_COLUMNS
    assert list(dict.fromkeys(zip(bands.feature_set, bands.model))) == [("learned", "logistic_l2"), ("learned", "svm")]
    first = preds[~preds.control]
    for model, b in bands.groupby("model"):
        g = first[(first.feature_set == "learned") & (first.model == model)]
        np.testing.assert_array_equal(b.fpr.to_numpy(), FPR_GRID)
        np.testing.assert_array_equal(b.tpr.to_numpy(), _grid_roc(g.label.to_numpy(), g.score.to_numpy()))
        lo, mid, hi = b.tpr_lower.to_numpy(), b.tpr.to_numpy(), b.tpr_upper.to_numpy()
        assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(lo <= hi)
        assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0)
        assert lo[-1] == hi[-1] == 1.0 and (b.n_boot == 300).all()
        assert 0.05 < (hi - lo)[1:-1].mean() < 0.4  # 80 patients: a band, neither empty nor the unit square
    pd.testing.assert_frame_equal(bands, roc_bands(preds, ["learned"], 300, 0, 0))  # seeded
    assert set(roc_bands(preds, [], 20, 0, 0).feature_set) == {"learned", "volume"}  # no primary pair: every set
    assert roc_bands(preds, ["learned"], 0, 0, 0).empty and list(roc_bands(preds, [], 0, 0, 0).columns) == BAND_COLUMNS


def test_one_patient_gives_a_band_of_zero_width():
    """Every resample of a single patient is the whole sample, so the band is the full-sample curve exactly."""
    g = _patients(np.random.default_rng(1))
    g = g[(g.feature_set == "learned") & (g.model == "svm") & ~g.control]
    full, lo, hi, kept = patient_band(g.label.to_numpy(), g.score.to_numpy(), np.zeros(len(g)), 50, np.random.default_rng(0))
    np.testing.assert_array_equal(lo, full)
    np.testing.assert_array_equal(hi, full)
    assert kept == 50


def test_the_bootstrap_resamples_patients_not_rows():
    """Duplicating every patient's rows leaves the patient band unchanged; a row bootstrap would narrow it ~1/sqrt(2)."""
    t = _patients(np.random.default_rng(0))
    t = t[(t.feature_set == "learned") & (t.model == "logistic_l2") & ~t.control].reset_index(drop=True)
    dup = pd.concat([t, t], ignore_index=True)
    width = lambda b: float((b.tpr_upper - b.tpr_lower).mean())  # noqa: E731
    once, twice = roc_bands(t, [], 400, 0, 0), roc_bands(dup, [], 400, 0, 0)
    pd.testing.assert_frame_equal(once, twice)
    by_row = lambda d: d.assign(patient_id=[f"r{i}" for i in range(len(d))])  # noqa: E731
    row_once, row_twice = roc_bands(by_row(t), [], 400, 0, 0), roc_bands(by_row(dup), [], 400, 0, 0)
    assert width(row_twice) / width(row_once) == pytest.approx(1 / np.sqrt(2), abs=0.08)
    assert width(twice) / width(row_twice) > 1.4


def test_benchmark_stage_writes_roc_bands_of_the_primary_sets_for_every_model(tmp_path):
    run_dir = tmp_path / "bands"
    make_run(run_dir, n_patients=30, seed=0)
    cfg = pipeline_config(run_dir, feature_sets=["learned", "handcrafted", "volume"], models=["logistic_l2", "svm"],
                          shuffled_control=False, bootstrap=40, cv={"folds": 3, "repeats": 1, "inner_folds": 2, "seed": 5})
    run_benchmark(run_dir, cfg, 3, lambda c, m, f: None, run_dir / "benchmark")
    out = run_dir / "benchmark"
    bands = pd.read_parquet(out / "roc_bands.parquet")
    preds = pd.read_parquet(out / "predictions.parquet")
    roc = pd.read_parquet(out / "roc_points.parquet")
    assert list(bands.columns) == BAND_COLUMNS
    assert sorted(set(zip(bands.feature_set, bands.model))) == [("handcrafted", "logistic_l2"), ("handcrafted", "svm"),
                                                                ("learned", "logistic_l2"), ("learned", "svm")]
    assert (bands.n_boot == 40).all() and len(bands) == 4 * len(FPR_GRID)
    # the run seed and the cv seed, through the band stream
    pd.testing.assert_frame_equal(bands, roc_bands(preds, ["learned", "handcrafted"], 40, 3, 5))
    assert not bands.equals(roc_bands(preds, ["learned", "handcrafted"], 40, 3, 6))
    for (fset, model), b in bands.groupby(["feature_set", "model"]):
        r = roc[(roc.feature_set == fset) & (roc.model == model)]
        want = np.array([r.tpr[r.fpr <= f + 1e-12].max() for f in FPR_GRID])
        np.testing.assert_array_equal(b.tpr.to_numpy(), want)  # the line the report draws, at the grid
        assert np.all(b.tpr_lower <= b.tpr) and np.all(b.tpr <= b.tpr_upper)
