"""ROC and calibration figures come from what the benchmark wrote (roc_points / calibration_bins), not recomputed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from sklearn.metrics import roc_curve

from radae.evaluate.stats import auc_score
from radae.report import plots
from radae.report.artifacts import RunFolder
from radae.report.blocks import Figure, Note
from radae.report.build import build_report
from radae.report.keys import KeyNumbers
from radae.report.sections import classification
from radae.report.sections.context import Context


def write_curve_files(bench) -> None:
    """The two files by the benchmark's contract, from predictions.parquet (first repeat, non-control rows)."""
    preds = pd.read_parquet(bench / "predictions.parquet")
    p = preds[(preds["task"] == "classification") & (~preds["control"].astype(bool)) & (preds["repeat"] == preds["repeat"].min())]
    roc, cal = [], []
    for (fset, model), g in p.groupby(["feature_set", "model"], sort=False):
        y, s = g["label"].to_numpy(float), g["score"].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(s)
        y, s = y[ok], s[ok]
        keys = dict(task="classification", feature_set=fset, model=model, repeat=int(g["repeat"].iloc[0]))
        fpr, tpr, _ = roc_curve(y, s)
        roc += [dict(keys, n=len(y), auc=auc_score(y, s), point=i, fpr=a, tpr=b) for i, (a, b) in enumerate(zip(fpr, tpr))]
        n_bins = int(max(3, min(10, len(y) // 10)))
        edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
        cal += [dict(keys, bin=b, mean_predicted=s[idx == b].mean(), observed=y[idx == b].mean(), count=int((idx == b).sum()))
                for b in range(len(edges) - 1) if (idx == b).any()]
    pd.DataFrame(roc).to_parquet(bench / "roc_points.parquet", index=False)
    pd.DataFrame(cal).to_parquet(bench / "calibration_bins.parquet", index=False)


def _curves(run_dir, monkeypatch):
    """(blocks, ROC curves, calibration curves) that curve_blocks hands to the plotting functions."""
    drawn = {}
    monkeypatch.setattr(classification.plots, "roc_curves",
                        lambda c, title, bands=None: drawn.setdefault("roc", (c, title, bands)) and b"png")
    monkeypatch.setattr(classification.plots, "calibration_curves", lambda c, title: drawn.setdefault("cal", (c, title)) and b"png")
    ctx = Context(run=RunFolder(run_dir), keys=KeyNumbers(), cfg={})
    cls = json.loads((run_dir / "benchmark" / "summary.json").read_text())["classification"]
    return classification.curve_blocks(ctx, cls), drawn, cls


def test_curves_are_drawn_from_the_benchmark_files(tiny_run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache"))
    write_curve_files(copy / "benchmark")
    blocks, drawn, cls = _curves(copy, monkeypatch)
    assert [b.alt for b in blocks] == ["ROC curves", "calibration curves"] and all(isinstance(b, Figure) for b in blocks)
    preds = pd.read_parquet(copy / "benchmark" / "predictions.parquet")
    p = preds[(preds["task"] == "classification") & ~preds["control"].astype(bool) & (preds["repeat"] == preds["repeat"].min())]
    model = p["model"].iloc[0]
    prim = [x for pr in (cls.get("primary") or {}).get("pairs") or [] for x in (pr["set_a"], pr["set_b"])]
    shown = list(dict.fromkeys(prim)) or list(p.loc[p["model"] == model, "feature_set"].unique())
    rocs, title, bands = drawn["roc"]
    assert title == f"ROC, pooled out-of-fold predictions ({model}, first repeat)"
    assert len(rocs) == len(shown) > 0
    # every drawn curve has its band, exactly the benchmark's rows
    file_bands = pd.read_parquet(copy / "benchmark" / "roc_bands.parquet")
    assert list(bands) == list(rocs)
    for (fpr, lower, upper), fset in zip(bands.values(), shown):
        want = file_bands[(file_bands.feature_set == fset) & (file_bands.model == model)]
        assert len(want) == 101 and (want.n_boot == 50).all()
        np.testing.assert_array_equal(fpr, want.fpr.to_numpy())
        np.testing.assert_array_equal(lower, want.tpr_lower.to_numpy())
        np.testing.assert_array_equal(upper, want.tpr_upper.to_numpy())
    assert "Shaded: pointwise 95 % patient-bootstrap band (50 resamples, vertical averaging)." in blocks[0].caption
    for (name, (fpr, tpr)), fset in zip(rocs.items(), shown):
        g = p[(p["model"] == model) & (p["feature_set"] == fset)]
        y, s = g["label"].to_numpy(float), g["score"].to_numpy(float)
        want_fpr, want_tpr, _ = roc_curve(y, s)
        assert name == f"{fset} (AUC {auc_score(y, s):.3f}, n = {len(y)})"
        np.testing.assert_array_equal(fpr, want_fpr)
        np.testing.assert_array_equal(tpr, want_tpr)
    cals, _ = drawn["cal"]
    assert [n.split(":")[0] for n in cals] == shown
    for (pred, obs, cnt), fset in zip(cals.values(), shown):
        assert len(pred) == len(obs) == len(cnt) >= 1 and cnt.sum() == ((p["model"] == model) & (p["feature_set"] == fset)).sum()
        assert np.all(np.diff(pred) > 0) and np.all((obs >= 0) & (obs <= 1))
    monkeypatch.undo()
    html = build_report(copy, tmp_path / "out").html_path.read_text()
    assert 'alt="ROC curves"' in html and 'alt="calibration curves"' in html
    assert "Not available: ROC and calibration curves" not in html


def test_the_benchmark_writes_exactly_these_curve_files(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache"))
    write_curve_files(copy / "benchmark")
    for name in ("roc_points.parquet", "calibration_bins.parquet"):
        ours, theirs = pd.read_parquet(copy / "benchmark" / name), pd.read_parquet(tiny_run / "benchmark" / name)
        pd.testing.assert_frame_equal(ours, theirs[ours.columns], check_dtype=False)


def test_absent_curve_files_give_a_note(tiny_run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache", "roc_points.parquet",
                                                                   "calibration_bins.parquet"))
    blocks, drawn, _ = _curves(copy, monkeypatch)
    assert not drawn and len(blocks) == 1 and isinstance(blocks[0], Note)
    assert blocks[0].text == ("Not available: ROC and calibration curves — benchmark/roc_points.parquet is missing; "
                              "benchmark/calibration_bins.parquet is missing.")


def test_runs_without_bands_draw_the_curves_and_say_so(tiny_run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache", "roc_bands.parquet"))
    blocks, drawn, _ = _curves(copy, monkeypatch)
    rocs, _, bands = drawn["roc"]
    assert len(rocs) > 0 and bands == {}
    assert blocks[0].caption.endswith("Curves drawn without confidence bands: benchmark/roc_bands.parquet is missing "
                                      "(a run from before the bands were computed).")


def test_roc_figure_fills_each_band_under_its_curve(tiny_run):
    bands = pd.read_parquet(tiny_run / "benchmark" / "roc_bands.parquet")
    roc = pd.read_parquet(tiny_run / "benchmark" / "roc_points.parquet")
    fset = bands.feature_set.iloc[0]
    r, b = roc[roc.feature_set == fset], bands[bands.feature_set == fset]
    figure = plots.roc_curves({"a": (r.fpr.to_numpy(), r.tpr.to_numpy()), "b": (r.fpr.to_numpy(), r.tpr.to_numpy())}, "t",
                              bands={"a": (b.fpr.to_numpy(), b.tpr_lower.to_numpy(), b.tpr_upper.to_numpy())})
    ax = figure.axes[0]
    assert len(ax.collections) == 1  # one band, for "a" only
    fill = ax.collections[0]
    assert fill.get_alpha() == pytest.approx(0.18) and tuple(fill.get_facecolor()[0][:3]) == pytest.approx(to_rgb(plots.colour(0)))
    verts = fill.get_paths()[0].vertices
    assert verts[:, 0].min() == 0.0 and verts[:, 0].max() == 1.0
    assert verts[:, 1].min() == pytest.approx(b.tpr_lower.min()) and verts[:, 1].max() == pytest.approx(b.tpr_upper.max())
    assert plots.to_png(figure)[:4] == b"\x89PNG"
