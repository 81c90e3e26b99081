"""Classification results of the downstream section: metrics, controls, per-fold AUC, comparisons, ROC and calibration.

The ROC and calibration figures are drawn from what the benchmark wrote (nothing is recomputed here):

- ``benchmark/roc_points.parquet``: task, feature_set, model, repeat, n, auc, point, fpr, tpr — one row per ROC point
  (``point`` 0..k-1 in ``sklearn.metrics.roc_curve`` order) of the pooled out-of-fold predictions of the first repeat,
  non-control rows; ``auc`` is that repeat's pooled AUC and ``n`` its finite rows;
- ``benchmark/calibration_bins.parquet``: task, feature_set, model, repeat, bin, mean_predicted, observed, count — the
  non-empty quantile bins of the same predictions, in order;
- ``benchmark/roc_bands.parquet``: task, feature_set, model, repeat, fpr, tpr, tpr_lower, tpr_upper, n_boot — the
  pointwise 95 % patient-bootstrap band of each primary set's ROC at a fixed FPR grid (vertical averaging), drawn as a
  translucent fill under its curve; runs from before the bands existed are drawn without them, and the caption says so.

Rows come in the order of ``benchmark/predictions.parquet``: the figures show its first model, as the benchmark wrote it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Heading, Note, Paragraph, Table
from radae.report.sections.context import Context, fig, plain
from radae.report.sections.results import CLS_METRICS, MainMetric, comparison_table, metric_blocks, result_rows

ROC_POINTS = "benchmark/roc_points.parquet"
CALIBRATION_BINS = "benchmark/calibration_bins.parquet"
ROC_BANDS = "benchmark/roc_bands.parquet"
CLS_MAIN = MainMetric("classification", "auc", "AUC",
                      "Shuffled-label control: the same pipeline on outcomes permuted between patients. It should be near 0.5; "
                      "if it is not, something leaks.", "Discrimination by feature set", "AUC",
                      "AUC with confidence intervals per feature set")


def classification_blocks(ctx: Context, cls: dict, comps: pd.DataFrame | None, adjust: str | None) -> list:
    """Metrics, controls, per-fold AUC, comparisons, then the ROC and calibration figures of ``summary.json``'s task."""
    k = ctx.keys
    label = cls.get("label")
    out: list = [Heading(f"Classification: {label}")]
    out.append(Paragraph(Markup("{} rows from {} patients; {} positive, {} negative.").format(
        k.put("classification.n_rows", cls.get("n_rows"), "int"), k.put("classification.n_patients", cls.get("n_patients"), "int"),
        k.put("classification.n_positive", cls.get("n_positive"), "int"), k.put("classification.n_negative", cls.get("n_negative"), "int"))))
    results = cls.get("results") or {}
    rows, forest = result_rows(ctx, "classification", results, CLS_METRICS, "auc")
    cols = ["feature set", "model", *(f"{lab} mean [95% CI]" for _m, lab in CLS_METRICS), "pooled AUC [bootstrap 95% CI]"]
    out.append(Table(cols, rows, "Cross-validated classification metrics (mean over outer folds and repeats)."))
    out += metric_blocks(ctx, CLS_MAIN, cls.get("shuffled_control"), forest,
                         f"n = {cls.get('n_rows')} rows, {cls.get('n_positive')} positive")
    out += comparison_table(ctx, comps, "classification", adjust)
    out += curve_blocks(ctx, cls)
    return out


def curve_blocks(ctx: Context, cls: dict) -> list:
    """ROC and calibration figures of the first model's first repeat, for the primary comparison's sets (else all)."""
    roc, cal = ctx.run.table(ROC_POINTS), ctx.run.table(CALIBRATION_BINS)
    if roc is None or cal is None:
        return [Note(f"Not available: ROC and calibration curves — {ctx.run.why(ROC_POINTS, CALIBRATION_BINS)}.")]
    roc = roc[roc["task"] == "classification"]
    if roc.empty:
        return [Note(f"Not available: ROC and calibration curves — {ROC_POINTS} has no classification rows.")]
    repeat = roc["repeat"].min()
    roc = roc[roc["repeat"] == repeat]
    model = roc["model"].iloc[0]
    roc = roc[roc["model"] == model]
    cal = cal[(cal["task"] == "classification") & (cal["repeat"] == repeat) & (cal["model"] == model)]
    results = cls.get("results") or {}
    rocs, cals, bands, band_n, unbanded = {}, {}, {}, [], []
    band_rows, band_why = _band_rows(ctx, repeat, model)
    prim = [x for pr in ((cls.get("primary") or {}).get("pairs") or []) for x in (pr["set_a"], pr["set_b"])]
    shown = list(dict.fromkeys(prim)) or list(roc["feature_set"].unique())  # the primary sets; the rest are in predictions.parquet
    for fset, g in roc.groupby("feature_set", sort=False):
        auc = float(g["auc"].iloc[0])
        if fset not in shown or not np.isfinite(auc):  # NaN AUC: one class only, no curve
            continue
        g = g.sort_values("point", kind="stable")
        name = f"{fset} (AUC {auc:.3f}, n = {int(g['n'].iloc[0])})"
        rocs[name] = (g["fpr"].to_numpy(float), g["tpr"].to_numpy(float))
        band = band_rows[band_rows["feature_set"] == fset] if band_rows is not None else band_rows
        if band is not None and len(band) and np.isfinite(band[["tpr_lower", "tpr_upper"]].to_numpy(float)).all():
            band = band.sort_values("fpr", kind="stable")
            bands[name] = (band["fpr"].to_numpy(float), band["tpr_lower"].to_numpy(float), band["tpr_upper"].to_numpy(float))
            band_n.append(int(band["n_boot"].iloc[0]))
        else:
            unbanded.append(fset)
        b = cal[cal["feature_set"] == fset].sort_values("bin", kind="stable")
        if b.empty:
            continue
        ent = ((results.get(fset) or {}).get(model) or {})
        slope, icpt = ((ent.get(m) or {}).get("mean") for m in ("calibration_slope", "calibration_intercept"))
        cals[f"{fset}: slope {plain(slope, '.2f')}, intercept {plain(icpt, '.2f')} ({len(b)} bins)"] = (
            b["mean_predicted"].to_numpy(float), b["observed"].to_numpy(float), b["count"].to_numpy())
    return [fig(plots.roc_curves(rocs, f"ROC, pooled out-of-fold predictions ({model}, first repeat)", bands=bands),
                "Each curve pools the out-of-fold predictions of one repeat, so every row is predicted once by a model "
                "that never saw it. The AUC in the legend (this repeat only) differs from the fold mean and from the pooled "
                "AUC in the table (mean prediction over repeats). "
                + band_caption(unbanded, band_n, band_why), "ROC curves"),
            fig(plots.calibration_curves(cals, f"Calibration, pooled out-of-fold predictions ({model})"),
                "Observed fraction of positives against the mean predicted probability in quantile bins of the prediction "
                "(marker area ~ rows in the bin); the dashed diagonal is perfect calibration. Legend: calibration slope "
                "(ideal 1) and intercept (ideal 0), fold means. Shown: the primary comparison's sets ("
                + ", ".join(shown) + "); every set's out-of-fold predictions are in benchmark/predictions.parquet.",
                "calibration curves")]


def _band_rows(ctx: Context, repeat, model: str) -> tuple[pd.DataFrame | None, str]:
    """(the ROC-band rows of this repeat and model, None without the file; why a set has no band)."""
    b = ctx.run.table(ROC_BANDS)
    if b is None:
        return None, f"{ctx.run.why(ROC_BANDS)} (a run from before the bands were computed)"
    b = b[(b["task"] == "classification") & (b["repeat"] == repeat) & (b["model"] == model)]
    return b.copy(), f"{ROC_BANDS} has no band for them (benchmark.bootstrap = 0, or no resample held both classes)"


def band_caption(unbanded: list[str], n_boot: list[int], why: str) -> str:
    """The ROC caption's sentence on the bands: what the shading is (``n_boot``: resamples of each banded curve), and
    which sets have none (``unbanded``) and why."""
    if not n_boot:
        return f"Curves drawn without confidence bands: {why}."
    b = f"{min(n_boot)}" if min(n_boot) == max(n_boot) else f"{min(n_boot)}-{max(n_boot)}"
    out = f"Shaded: pointwise 95 % patient-bootstrap band ({b} resamples, vertical averaging)."
    return out + (f" No band for {', '.join(unbanded)}: {why}." if unbanded else "")
