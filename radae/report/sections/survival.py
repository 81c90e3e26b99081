"""Survival results of the downstream section: metrics, controls, per-fold C, td-AUC, Kaplan–Meier, comparisons."""
from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import forest as glance
from radae.report import plots
from radae.report.blocks import Heading, Note, Paragraph, Table
from radae.report.sections.context import Context, fig, first_entry, plain
from radae.report.sections.results import SURV_METRICS, MainMetric, comparison_table, metric_blocks, result_rows

SURV_MAIN = MainMetric("survival", "harrell_c", "Harrell's C", "Shuffled-outcome control (should be near 0.5).",
                       "Concordance by feature set", "C-index", "C-index with confidence intervals per feature set")


def survival_blocks(ctx: Context, sv: dict, comps: pd.DataFrame | None, adjust: str | None) -> list:
    k = ctx.keys
    out: list = [Heading(f"Survival: {sv.get('time')} / {sv.get('event')}")]
    horizons = sv.get("horizons") or []
    out.append(Paragraph(Markup("{} rows from {} patients with {} events. Time-dependent AUC at horizons {}; integrated Brier "
                                "score over {}.").format(
        k.put("survival.n_rows", sv.get("n_rows"), "int"), k.put("survival.n_patients", sv.get("n_patients"), "int"),
        k.put("survival.n_events", sv.get("n_events"), "int"), ", ".join(plain(h, ".4g") for h in horizons) or "n/a",
        " – ".join(plain(x, ".4g") for x in (sv.get("ibs_window") or [])) or "n/a")))
    results = sv.get("results") or {}
    rows, forest = result_rows(ctx, "survival", results, SURV_METRICS, "harrell_c")
    cols = ["feature set", "model", *(f"{lab} mean [95% CI]" for _m, lab in SURV_METRICS), "pooled Harrell's C [bootstrap 95% CI]",
            "log-rank p (risk groups)"]
    out.append(Table(cols, rows, "Cross-validated survival metrics (mean over outer folds and repeats). Risk groups: above/below "
                     "the training-fold median risk."))
    out += metric_blocks(ctx, SURV_MAIN, sv.get("shuffled_control"), forest,
                         f"n = {sv.get('n_rows')} rows, {sv.get('n_events')} events")
    td = {}
    for fset, per_model in results.items():
        model, entry = first_entry(per_model)
        hs = sorted((float(m.split("@", 1)[1]), v.get("mean")) for m, v in (entry or {}).items() if m.startswith("td_auc@"))
        if hs:
            td[f"{fset} / {model}"] = (np.array([h for h, _ in hs]), np.array([np.nan if v is None else v for _, v in hs], dtype=float))
    if td:
        out.append(fig(plots.lines_by_group(td, f"horizon ({sv.get('time')})", "time-dependent AUC (mean over folds)",
                                            "Time-dependent AUC (cumulative/dynamic)"),
                       "Uno's cumulative/dynamic AUC at each horizon, mean over outer folds; dashed line = chance.",
                       "time-dependent AUC per horizon"))
    km = ctx.run.table("benchmark/km.parquet")
    if km is None or km.empty:
        out.append(Note(f"Not available: Kaplan–Meier curves — {ctx.run.why('benchmark/km.parquet') or 'km.parquet has no rows'}."))
    else:
        panels = {}
        for (fset, model), g in km.groupby(["feature_set", "model"], sort=False):
            p = ((results.get(fset) or {}).get(model) or {}).get("logrank_p")
            groups = {}
            for grp, gg in g.groupby("group", sort=True):
                gg = gg.sort_values("time")
                groups[str(grp)] = (gg["time"].to_numpy(float), gg["survival"].to_numpy(float), gg["ci_lower"].to_numpy(float),
                                    gg["ci_upper"].to_numpy(float), int(gg["at_risk"].max()) if gg["at_risk"].notna().any() else 0)
            panels[f"{fset} / {model}: log-rank p = {plain(p, '.3g')}"] = groups
        out.append(fig(plots.km_panels(panels, sv.get("time") or "time", "Kaplan–Meier curves of out-of-fold risk groups"),
                       "Patients split at the training-fold median of the predicted risk (first repeat, out-of-fold; a "
                       "patient with several lesions counts once, in the group most of its lesions fall in), with 95% "
                       "confidence bands; n = patients at risk at time 0.", "Kaplan-Meier curves"))
        nar = glance.numbers_at_risk_table(km, sv.get("time") or "time")
        if nar is not None:
            out.append(nar)
    out += comparison_table(ctx, comps, "survival", adjust)
    return out
