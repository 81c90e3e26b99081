"""Report section "Robustness": per-feature ICC under perturbation, per feature set."""
from __future__ import annotations

import numpy as np
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Paragraph, Section, Table
from radae.report.keys import key_segment
from radae.report.robustness_views import robustness_extra_blocks
from radae.report.sections.context import Context, fig, plain, skip_reason, table_from_frame


def robustness_section(ctx: Context) -> Section:
    sec = Section("robustness", "Robustness of features (ICC under perturbation)")
    rob = ctx.run.table("benchmark/robustness.parquet")
    rcfg = ctx.section_cfg("benchmark", "robustness") or {}
    if rob is None:
        sec.available = False
        return sec.missing("feature robustness", skip_reason(ctx, "robustness") or ctx.run.why("benchmark/robustness.parquet")
                           or "the benchmark stage did not run")
    if rob.empty:
        sec.available = False
        return sec.missing("feature robustness", "benchmark/robustness.parquet has no rows (no lesion completed every perturbation)")
    kind = {"icc3_1": "ICC(3,1), consistency", "icc2_1": "ICC(2,1), absolute agreement"}.get(rcfg.get("icc"), str(rcfg.get("icc")))
    n_les = int(rob["n_lesions"].max()) if "n_lesions" in rob else None
    n_cond = int(rob["n_conditions"].max()) if "n_conditions" in rob else None
    pert = ", ".join(rcfg.get("perturbations") or []) or "n/a"
    sec.add(Paragraph(Markup(
        "Each of up to {} lesions was re-extracted under each perturbation ({}) through the same path as the real "
        "extraction; lesions are subjects and the {} conditions (original + perturbed) are raters of a {}. "
        "A feature with ICC ≥ 0.75 is usually called robust, ≥ 0.9 excellent.").format(
        plain(n_les, "int"), pert, plain(n_cond, "int"), kind)))
    k = ctx.keys
    rows, groups = [], {}
    for fset, g in rob.groupby("feature_set", sort=True):
        x = g["icc"].to_numpy(dtype=float)
        seg = f"robustness.{key_segment(fset)}"
        frac = lambda t: float(np.mean(np.nan_to_num(x, nan=-np.inf) >= t)) if len(x) else float("nan")  # noqa: E731
        rows.append([fset, k.put(f"{seg}.n_features", len(x), "int"), int(np.isnan(x).sum()),
                     k.put(f"{seg}.median_icc", np.nanmedian(x) if np.isfinite(x).any() else np.nan, ".3f"),
                     k.put(f"{seg}.fraction_icc_ge_0_75", frac(0.75), ".3f"),
                     k.put(f"{seg}.fraction_icc_ge_0_90", frac(0.90), ".3f")])
        groups[str(fset)] = x
    sec.add(Table(["feature set", "features", "ICC undefined", "median ICC", "fraction ICC ≥ 0.75", "fraction ICC ≥ 0.90"], rows,
                  "ICC per feature set. Undefined ICCs (constant features) count as not robust in the fractions.",
                  numeric=[False, True, True, True, True, True]))
    sec.add(fig(plots.distributions(groups, "ICC", "Distribution of per-feature ICC", thresholds=(0.75, 0.9)),
                f"Per-feature ICC by feature set (fraction of the set's features per bin; dashed lines at 0.75 and 0.9). "
                f"n = {n_les} lesions × {n_cond} conditions. ICCs below 0 are drawn at the left edge.",
                "histogram of ICC per feature set"))
    worst = rob.sort_values("icc", na_position="first").head(min(ctx.max_rows, 15))
    sec.add(table_from_frame(worst[[c for c in ("feature_set", "feature", "icc", "icc_ci_low", "icc_ci_high", "n_lesions")
                                    if c in worst]], "Least robust features (ICC with its 95% interval)"))
    sec.add(*robustness_extra_blocks(ctx))
    return sec
