"""Blocks shared by the classification and survival results: metric tables, per-fold spread, paired comparisons."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Note, Table
from radae.report.keys import key_segment
from radae.report.sections.context import Context, fig, plain
from radae.util.values import as_bool


CLS_METRICS = (("auc", "AUC"), ("balanced_accuracy", "balanced accuracy"), ("brier", "Brier score"),
               ("calibration_slope", "calibration slope"), ("calibration_intercept", "calibration intercept"))
SURV_METRICS = (("harrell_c", "Harrell's C"), ("uno_c", "Uno's C"), ("td_auc_mean", "mean td-AUC"), ("ibs", "integrated Brier"))


def _ci(ctx: Context, key: str, entry: dict | None, est: str = "mean", fmt: str = ".3f") -> Markup:
    """``0.812 [0.701, 0.901]`` with all three numbers as key spans (n/a when the entry is missing)."""
    entry = entry or {}
    k = ctx.keys
    return Markup("{} [{}, {}]").format(k.put(f"{key}.{est}", entry.get(est), fmt), k.put(f"{key}.ci_low", entry.get("ci_low"), fmt),
                                        k.put(f"{key}.ci_high", entry.get("ci_high"), fmt))


def result_rows(ctx: Context, task: str, results: dict, metrics, main: str) -> tuple[list, list]:
    rows, forest = [], []
    for fset, per_model in results.items():
        for model, entry in per_model.items():
            base = f"{task}.{key_segment(fset)}.{key_segment(model)}"
            row = [fset, model]
            for m, _label in metrics:
                row.append(_ci(ctx, f"{base}.{m}", entry.get(m)))
            pooled = entry.get(f"{main}_pooled") or {}
            row.append(_ci(ctx, f"{base}.{main}_pooled", pooled, est="estimate"))
            if task == "survival":
                row.append(ctx.keys.put(f"{base}.logrank_p", entry.get("logrank_p"), ".3g"))
            rows.append(row)
            e = entry.get(main) or {}
            forest.append((f"{fset} / {model}", *(float(e.get(x)) if e.get(x) is not None else np.nan for x in ("mean", "ci_low", "ci_high"))))
    return rows, forest


def control_rows(ctx: Context, task: str, control: dict, main: str) -> tuple[list, list]:
    rows, forest = [], []
    for fset, per_model in (control or {}).items():
        for model, entry in per_model.items():
            e = entry.get(main) or {}
            rows.append([fset, model, _ci(ctx, f"{task}.shuffled_control.{key_segment(fset)}.{key_segment(model)}.{main}", e)])
            forest.append((f"shuffled labels: {fset}", *(float(e.get(x)) if e.get(x) is not None else np.nan for x in ("mean", "ci_low", "ci_high"))))
    return rows, forest


@dataclass(frozen=True)
class MainMetric:
    """A task's main metric (``metric``, shown as ``label``) and the words of its control table and forest figure."""

    task: str  # "classification" | "survival"
    metric: str  # the key in summary.json's results and cv_results.parquet's metric column, e.g. "auc"
    label: str  # e.g. "AUC": column header, axis and per-fold figure
    control_caption: str
    plot_title: str
    estimate: str  # the estimate's name in the forest caption, e.g. "C-index"
    alt: str  # the forest figure's alt text


def metric_blocks(ctx: Context, main: MainMetric, control: dict | None, forest: list, counts: str) -> list:
    """The shuffled-label control table, the forest figure of every set (and control) and the per-fold spread of the main
    metric. ``forest``: the sets' rows from :func:`result_rows`; ``counts``: e.g. "n = 40 rows, 20 positive"."""
    out: list = []
    crow, cforest = control_rows(ctx, main.task, control, main.metric)
    if crow:
        out.append(Table(["feature set", "model", f"{main.label} mean [95% CI]"], crow, main.control_caption))
    if forest:
        out.append(fig(plots.estimate_with_ci(forest + cforest, f"{main.label} (mean over folds, 95% CI)", main.plot_title),
                       f"{main.estimate} with corrected-t 95% intervals; dashed line = chance. {counts}.", main.alt))
    return out + fold_blocks(ctx, main.task, main.metric, main.label)


def fold_blocks(ctx: Context, task: str, metric: str, label: str) -> list:
    """Per-fold values of the main metric (cv_results.parquet): the spread behind the means."""
    cvres = ctx.run.table("benchmark/cv_results.parquet")
    if cvres is None:
        return [Note(f"Not available: per-fold results — {ctx.run.why('benchmark/cv_results.parquet')}.")]
    c = cvres[(cvres["task"] == task) & (cvres["metric"] == metric) & (cvres["fold"] >= 0)]
    if c.empty:
        return []
    groups = {}
    for (fset, model, control), g in c.groupby(["feature_set", "model", "control"], sort=False):
        one_model = c["model"].nunique() == 1
        groups[f"{'shuffled: ' if control else ''}{fset}" + ("" if one_model else f"\n{model}")] = g["value"].to_numpy(float)
    n_test = int(c["n_test"].median())
    return [fig(plots.strip_by_group(groups, f"{label} per outer test fold", f"{label} per fold", ylim=(0.0, 1.0), reference=0.5),
                f"One point per outer test fold and repeat (median {n_test} rows per test fold); boxes: quartiles.",
                f"{label} per fold")]


def comparison_table(ctx: Context, comps: pd.DataFrame | None, task: str, adjust: str | None) -> list:
    if comps is None:
        return [Note(f"Not available: pairwise comparisons — {ctx.run.why('benchmark/comparisons.csv')}.")]
    c = comps[comps["task"] == task] if "task" in comps else comps.iloc[:0]
    if c.empty:
        return [Note("No pairwise comparisons (fewer than two feature sets).")]
    adj_col = "p_adjusted" if "p_adjusted" in c else ("p_holm" if adjust == "holm" else "p_bh")
    if "role" in c:  # the primary family shown, the exploratory pairs collapsed
        out = []
        for role, collapsed in (("primary", False), ("exploratory", True)):
            part = c[c["role"] == role]
            if len(part):
                out += _comparison_rows_table(ctx, part, task, adj_col, role, collapsed)
        return out
    return _comparison_rows_table(ctx, c, task, adj_col, "", False)


TEST_NAMES = {"corrected_t": "corrected t (folds)", "corrected_t_nadeau_bengio": "corrected t, Nadeau–Bengio (folds)",
              "corrected_t_calibrated": "corrected t, calibrated df (folds)",
              "patient_bootstrap": "patient bootstrap (identical fold differences)", "delong": "DeLong (pooled)"}


def _comparison_rows_table(ctx: Context, c: pd.DataFrame, task: str, adj_col: str, role: str, collapsed: bool) -> list:
    rows = []
    k = ctx.keys
    for r in c.itertuples(index=False):
        key = f"comparisons.{task}.{key_segment(r.model)}.{key_segment(r.test)}.{key_segment(r.set_a)}__vs__{key_segment(r.set_b)}"
        ci = "" if pd.isna(r.ci_low) else f"[{plain(r.ci_low, '.3f')}, {plain(r.ci_high, '.3f')}]"
        rows.append([f"{r.set_a} vs {r.set_b}", r.model, TEST_NAMES.get(r.test, r.test),
                     Markup("{} − {} = {} {}").format(plain(r.estimate_a, ".3f"), plain(r.estimate_b, ".3f"),
                                                      k.put(f"{key}.diff", r.diff, ".3f"), ci),
                     k.put(f"{key}.p_raw", r.p_raw, ".3g"), k.put(f"{key}.p_adjusted", getattr(r, adj_col), ".3g"),
                     "yes" if as_bool(r.significant) else "no"])
    caption = {"primary": "Primary comparison (pre-specified by benchmark.primary, plus the best learned-feature set; adjusted "
                          "within this family): paired corrected t-test of the fold-wise differences of the metric.",
               "exploratory": f"Exploratory comparisons: all other pairs ({len(rows)}), Benjamini–Hochberg adjusted; "
                              "hypothesis-generating only (click to expand)."}.get(role, "Paired comparisons of feature sets on the same folds.")
    return [Table(["comparison", "model", "test", "estimate a − b = difference [95% CI]", "p", "p adjusted", "significant"],
                  rows, caption, numeric=[False, False, False, False, True, True, False], collapsed=collapsed)]
