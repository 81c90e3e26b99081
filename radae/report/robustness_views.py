"""Extra blocks of the report's robustness section: which perturbations changed each set's input, ICC by family.

Reads ``benchmark/robustness_inputs.parquet`` and ``benchmark/robustness_families.parquet`` (written by
the benchmark's perturbation study). A perturbation that left a set's input bit-identical for every
lesion cannot lower that set's ICC, so the count is shown beside the ICCs it qualifies.
"""
from __future__ import annotations

from markupsafe import Markup

from radae.report.blocks import Heading, Note, Table
from radae.report.keys import format_number, key_segment


def robustness_extra_blocks(ctx) -> list:
    out: list = []
    ch = ctx.run.table("benchmark/robustness_inputs.parquet")
    if ch is not None and len(ch):
        sets = sorted(ch["feature_set"].unique())
        rows = []
        for cond, g in ch.groupby("condition", sort=True):
            row = [cond]
            by = g.set_index("feature_set")
            for s in sets:
                if s in by.index:
                    r = by.loc[s]
                    row.append(Markup("{} / {}").format(
                        ctx.keys.put(f"robustness.inputs_changed.{key_segment(cond)}.{key_segment(s)}", r["n_changed"], "int"),
                        int(r["n_lesions"])))
                else:
                    row.append("")
            rows.append(row)
        out.append(Table(["perturbation", *(f"{s}: input changed / lesions" for s in sets)], rows,
                         "Lesions whose extractor input (learned: the encoder's ROI, with the mask channel when the model "
                         "takes one; handcrafted: the resampled crop and mask given to PyRadiomics) differs from the "
                         "unperturbed one. Where no input changed, an ICC of 1 holds by construction.",
                         numeric=[False, *([True] * len(sets))]))
        unchanged = ch[ch["n_changed"] == 0]
        if len(unchanged):
            out.append(Note("Inputs unchanged for every lesion: " + ", ".join(f"{r.condition} ({r.feature_set})"
                                                                                 for r in unchanged.itertuples(index=False)) + "."))
    fam = ctx.run.table("benchmark/robustness_families.parquet")
    if fam is not None and len(fam):
        out.append(Heading("ICC by feature family"))
        rows = []
        for r in fam.itertuples(index=False):
            key = f"robustness.family.{key_segment(r.feature_set)}.{key_segment(r.family)}.median_icc"
            rows.append([r.feature_set, r.family, int(r.n_features),
                         Markup("{} [{}, {}]").format(ctx.keys.put(key, r.median_icc, ".3f"), format_number(r.ci_low, ".3f"),
                                                      format_number(r.ci_high, ".3f")),
                         format_number(r.fraction_icc_ge_0_75, ".3f"), format_number(r.fraction_icc_ge_0_90, ".3f")])
        out.append(Table(["feature set", "family", "features", "median ICC [95% CI]", "fraction ≥ 0.75", "fraction ≥ 0.90"], rows,
                         "Median ICC per feature set and family ('all' = the whole set); interval: percentile bootstrap over "
                         "lesions. Per-feature ICCs carry exact F-based 95% intervals in benchmark/robustness.parquet.",
                         numeric=[False, False, True, False, True, True]))
    return out
