"""ROC points and calibration bins: what the benchmark writes for the report, checked against scikit-learn."""
import numpy as np
import pandas as pd
import pytest
from tests.evaluate.benchmark_synth import make_run, pipeline_config
from sklearn.metrics import roc_auc_score, roc_curve

from radae.evaluate.curves import CALIBRATION_COLUMNS, ROC_COLUMNS, curve_tables
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
