"""Report section "Label efficiency": the main metric against the number of labelled training patients.

Reads ``benchmark/label_efficiency.parquet`` (written when ``benchmark.label_fractions`` is set) and
draws one line per feature set (first model of the task) with its 95% band, per task. The points are
recomputed from the table with :func:`radae.evaluate.label_efficiency.curves`, the same function that
wrote the benchmark's summary.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.evaluate.label_efficiency import curves
from radae.report import plots
from radae.report.blocks import Figure, Heading, Note, Paragraph, Section, Table
from radae.report.keys import key_segment

MAIN = {"classification": ("auc", "AUC"), "survival": ("harrell_c", "Harrell's C")}


def label_curve_figure(points: pd.DataFrame, ylabel: str, title: str):
    """One line per set: mean metric against mean labelled patients, shaded 95% interval; chance at 0.5."""
    fig = plots.new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    for i, (fset, g) in enumerate(points.groupby("set", sort=False)):
        g = g.sort_values("n_train_patients")
        x = g["n_train_patients"].to_numpy(float)
        c = plots.colour(i)
        ax.plot(x, g["mean"].to_numpy(float), "o-", color=c, label=str(fset), ms=4)
        lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=c, alpha=0.15, lw=0)
    ax.axhline(0.5, ls="--", color="#999999", lw=1)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("labelled training patients per outer fold")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return fig


def label_efficiency_section(ctx) -> Section:
    sec = Section("label_efficiency", "Label efficiency: performance vs labelled patients")
    table = ctx.run.table("benchmark/label_efficiency.parquet")
    if table is None:
        sec.available = False
        info = (ctx.run.json("benchmark/summary.json") or {}).get("label_efficiency") or {}
        why = info.get("reason") if info.get("status") == "skipped" else ctx.run.why("benchmark/label_efficiency.parquet")
        return sec.missing("label-efficiency curves", why or "the benchmark stage did not run")
    bcfg = ctx.section_cfg("benchmark") or {}
    sec.add(Paragraph(Markup(
        "Inside every outer training fold, the labelled training patients were subsampled (stratified by class, or by event "
        "for survival; all lesions of a patient together; seeded; smaller fractions nested in larger ones) at fractions {}, "
        "{} draw(s) each over the first {} outer repeat(s); every feature set and model was refitted on the subsample and "
        "scored on the same outer test fold. The encoder was not retrained: it uses no labels. Bands: 95% corrected-t "
        "interval over folds and draws.").format(
        ", ".join(f"{f:g}" for f in bcfg.get("label_fractions") or sorted(table["fraction"].unique())),
        bcfg.get("label_repeats", "?"), bcfg.get("label_cv_repeats", "?"))))
    k = ctx.keys
    for task in ("classification", "survival"):
        metric, label = MAIN[task]
        pts = curves(table[table["task"] == task], metric)
        if pts.empty:
            continue
        model = str(pts["model"].iloc[0])
        first = pts[pts["model"] == model]
        sec.add(Heading(f"{task.capitalize()}: {label} vs labelled patients"))
        sec.add(Figure(plots.to_data_uri(label_curve_figure(first, label, f"{label} vs labelled patients ({model})")),
                       f"One line per feature set ({model}); x = mean number of labelled training patients per fold at each "
                       f"fraction; shaded = 95% interval; dashed = chance.", f"{task} label-efficiency curves"))
        rows = []
        for r in pts.itertuples(index=False):
            key = f"label_efficiency.{task}.{key_segment(r.set)}.{key_segment(r.model)}.f{key_segment(f'{r.fraction:g}')}"
            rows.append([r.set, r.model, f"{r.fraction:g}", f"{r.n_train_patients:.1f}",
                         Markup("{} [{}, {}]").format(k.put(f"{key}.mean", r.mean, ".3f"), f"{r.ci_low:.3f}", f"{r.ci_high:.3f}"),
                         r.n_values])
        sec.add(Table(["feature set", "model", "fraction", "labelled patients", f"{label} mean [95% CI]", "fold values"], rows,
                      f"{label} per labelled fraction (mean over outer test folds and subsample draws).",
                      numeric=[False, False, True, True, False, True], collapsed=len(rows) > 24))
    if len(sec.blocks) == 1:
        sec.add(Note("benchmark/label_efficiency.parquet has no rows of a task's main metric."))
    return sec
