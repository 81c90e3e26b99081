"""ROC and calibration figures come from what the benchmark wrote (roc_points / calibration_bins), not recomputed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from radae.evaluate.stats import auc_score
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
    monkeypatch.setattr(classification.plots, "roc_curves", lambda c, title: drawn.setdefault("roc", (c, title)) and b"png")
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
    rocs, title = drawn["roc"]
    assert title == f"ROC, pooled out-of-fold predictions ({model}, first repeat)"
    assert len(rocs) == len(shown) > 0
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
