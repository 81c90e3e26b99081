"""Report section "Redundancy": Spearman correlation of each latent dimension with the handcrafted features."""
from __future__ import annotations

import numpy as np
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Paragraph, Section
from radae.report.sections.context import Context, fig, skip_reason, table_from_frame


def redundancy_section(ctx: Context) -> Section:
    sec = Section("redundancy", "Redundancy: learned vs handcrafted features")
    red = ctx.run.table("benchmark/redundancy.parquet")
    if red is None or red.empty:
        sec.available = False
        return sec.missing("the redundancy analysis", skip_reason(ctx, "redundancy") or ctx.run.why("benchmark/redundancy.parquet")
                           or "benchmark/redundancy.parquet has no rows")
    k = ctx.keys
    ok = red.dropna(subset=["abs_rho"])
    best = ok.loc[ok.groupby("latent")["abs_rho"].idxmax()].sort_values("abs_rho", ascending=False)
    n_lat, n_hc = red["latent"].nunique(), red["feature"].nunique()
    parts = [Markup("Spearman correlation between each of {} latent dimensions and each of {} handcrafted features "
                    "(lesion volume included), over all lesions. Median over latents of the strongest |ρ|: {}; fraction "
                    "of latents with a handcrafted twin (|ρ| ≥ 0.8): {}.").format(
        k.put("redundancy.n_latent", n_lat, "int"), k.put("redundancy.n_handcrafted", n_hc, "int"),
        k.put("redundancy.median_max_abs_rho", best["abs_rho"].median() if len(best) else np.nan, ".3f"),
        k.put("redundancy.fraction_latent_max_abs_rho_ge_0_8", (best["abs_rho"] >= 0.8).sum() / max(n_lat, 1), ".3f"))]
    vol = ok[ok["is_volume"].astype(bool)] if "is_volume" in ok else ok.iloc[:0]
    if len(vol):
        parts.append(Markup(" The latent most correlated with lesion volume has |ρ| = {}.").format(
            k.put("redundancy.volume_max_abs_rho", vol["abs_rho"].max(), ".3f")))
    sec.add(Paragraph(Markup("").join(parts)))
    # heat map: every latent x the handcrafted features that matter most (+ volume)
    strength = ok.groupby("feature")["abs_rho"].max().sort_values(ascending=False)
    vol_names = set(red.loc[red["is_volume"].astype(bool), "feature"]) if "is_volume" in red else set()
    cols = list(dict.fromkeys([*sorted(vol_names), *strength.index[:30]]))
    mat = red.pivot_table(index="latent", columns="feature", values="rho", aggfunc="first").reindex(columns=cols)
    mat = mat.sort_index()
    sec.add(fig(plots.heatmap(mat.to_numpy(float), list(mat.index), [c.replace("original_", "") for c in cols],
                              "Spearman ρ: latent dimensions × handcrafted features", "Spearman ρ"),
                f"Rows: all {len(mat)} latent dimensions; columns: lesion volume and the {len(cols) - len(vol_names)} handcrafted "
                f"features with the strongest correlation to any latent (of {n_hc}). Colour range fixed at [-1, 1].",
                "heat map of latent-handcrafted correlations"))
    top = best.head(10)[["latent", "feature", "rho"]]
    sec.add(table_from_frame(top, "Latent dimensions with the strongest handcrafted twin (up to ten)"))
    return sec
