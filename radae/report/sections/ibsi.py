"""Report section "IBSI compliance": radae's PyRadiomics wrapper against the IBSI 1 reference values."""
from __future__ import annotations

import pandas as pd
from markupsafe import Markup

from radae.report.blocks import Note, Paragraph, Section
from radae.report.sections.context import Context, plain, table_from_frame


def ibsi_section(ctx: Context) -> Section:
    sec = Section("ibsi", "IBSI compliance of the handcrafted features")
    tab = ctx.run.table("extract/ibsi_compliance.csv")
    if tab is None or tab.empty:
        sec.available = False
        return sec.missing("the IBSI compliance table", ctx.run.why("extract/ibsi_compliance.csv") or "the table has no rows")
    if not {"dataset", "status"} <= set(tab.columns):
        sec.add(Note("extract/ibsi_compliance.csv has no dataset/status columns; shown as is."))
        sec.add(table_from_frame(tab, "IBSI compliance table", max_rows=ctx.max_rows, digits=6))
        return sec
    k = ctx.keys
    status = tab["status"].astype(str)
    compared = status.isin(["match", "mismatch"])
    n_match = int((status == "match").sum())
    sec.add(Paragraph(Markup(
        "PyRadiomics, run through radae's own wrapper, against the IBSI 1 consensus reference values (digital phantom and "
        "CT phantom configurations): {} of {} features with a reference and a PyRadiomics counterpart match within the "
        "IBSI tolerance; {} do not, each with the reason below. Rows marked not_in_pyradiomics / not_configurable are IBSI "
        "features or settings PyRadiomics cannot produce.").format(
        k.put("ibsi.match", n_match, "int"), k.put("ibsi.compared", int(compared.sum()), "int"),
        k.put("ibsi.mismatch", int((status == "mismatch").sum()), "int"))))
    counts = pd.crosstab(tab["dataset"].astype(str), status).reset_index()
    counts.columns.name = None
    sec.add(table_from_frame(counts, "Features per IBSI dataset/configuration and outcome of the comparison."))
    mism = tab.loc[status == "mismatch"]
    mism = pd.DataFrame({
        "dataset": mism["dataset"], "IBSI feature": mism.get("ibsi_feature"),
        "PyRadiomics feature": mism.get("pyradiomics_feature", pd.Series("", index=mism.index)).astype(str).str.replace("original_", "", regex=False),
        "reference ± tolerance": [f"{plain(r, '.6g')} ± {plain(t, '.3g')}" for r, t in zip(mism.get("reference"), mism.get("tolerance"))],
        "radae": mism.get("value"), "reason": mism.get("reason")})
    if len(mism):  # one row per reason (a sentence each), the per-feature list behind a toggle
        reasons = mism.assign(reason=mism["reason"].fillna("no reason recorded").astype(str)).groupby("reason", sort=False).agg(
            features=("PyRadiomics feature", lambda v: ", ".join(list(dict.fromkeys(v))[:4]) + (" …" if v.nunique() > 4 else "")),
            n=("PyRadiomics feature", "size"), datasets=("dataset", lambda v: ", ".join(sorted(set(map(str, v))))))
        reasons = reasons.reset_index()[["reason", "n", "datasets", "features"]].rename(
            columns={"n": "mismatches", "features": "for example"})
        sec.add(table_from_frame(reasons, "Why features differ from the IBSI reference: one sentence per reason.", wide=("reason",)))
        sec.add(table_from_frame(mism, "Every feature that differs (click to expand).", max_rows=ctx.max_rows, digits=6,
                                 wide=("reason",), collapsed=True))
    version = tab["pyradiomics_version"].dropna().astype(str).unique() if "pyradiomics_version" in tab else []
    sec.add(Paragraph(f"Full table (naming map PyRadiomics → IBSI, values, tolerances): extract/ibsi_compliance.csv, "
                      f"{len(tab)} rows; PyRadiomics {', '.join(version) or 'version not recorded'}."))
    return sec
