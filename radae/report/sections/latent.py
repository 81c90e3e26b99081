"""Report section "Latent space": PCA of the learned features coloured by outcome, then the latent views."""
from __future__ import annotations

import numpy as np
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Paragraph, Section
from radae.report.latent_views import view_blocks
from radae.report.sections.context import Context, fig, outcome_spec, patient_outcomes
from radae.runfolder import is_latent_column


def latent_section(ctx: Context) -> Section:
    sec = Section("latent", "Latent space")
    lat = ctx.run.table("extract/latent.parquet")
    if lat is None:
        sec.available = False
        return sec.missing("the latent space", ctx.run.why("extract/latent.parquet") or "the extract stage did not run")
    feat = [c for c in lat.columns if is_latent_column(c)]
    X = lat[feat].to_numpy(dtype=float)
    ok = np.isfinite(X).all(axis=1)
    if len(feat) < 2 or ok.sum() < 3:
        sec.available = False
        return sec.missing("the latent space", f"extract/latent.parquet has {len(feat)} latent columns and {ok.sum()} complete rows")
    X, rows = X[ok], lat.loc[ok].reset_index(drop=True)
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    scores = U[:, :2] * S[:2]
    var = S**2 / np.sum(S**2)
    k = ctx.keys
    sec.add(Paragraph(Markup("{} rows × {} latent dimensions (standardised). The first two principal components explain {} "
                             "and {} of the variance.").format(
        k.put("latent.lesions", len(rows), "int"), k.put("latent.dimensions", len(feat), "int"),
        k.put("latent.pc1_variance", var[0], ".3f"), k.put("latent.pc2_variance", var[1], ".3f"))))
    spec = outcome_spec(ctx)
    pts = patient_outcomes(ctx)
    colourings = []
    if pts is not None and spec["label"] and spec["label"] in pts:
        colourings.append((spec["label"], "categorical", pts.set_index("patient_id")[spec["label"]]))
    if pts is not None and spec["event"] and spec["event"] in pts:
        colourings.append((spec["event"], "categorical", pts.set_index("patient_id")[spec["event"]]))
    if not colourings:
        colourings.append((None, "none", None))
    coloured = []
    for label, kind, values in colourings:
        c = None if values is None else rows["patient_id"].astype(str).map(values.rename(index=str)).to_numpy(object)
        if c is not None:
            c = np.array([None if v != v else int(v) if float(v).is_integer() else v for v in c], dtype=object)
            coloured.append((label, c))
        title = f"PCA of latent features{'' if label is None else ' coloured by ' + label}"
        sec.add(fig(plots.scatter_2d(scores, c, kind, label or "", f"PC1 ({var[0]:.1%} of variance)",
                                     f"PC2 ({var[1]:.1%} of variance)", title),
                    f"One point per row of latent.parquet (n = {len(rows)}); grey points have no outcome (e.g. unlabeled pretraining "
                    f"patients). PCA is unsupervised and linear: the outcome only colours the points, and distances keep their meaning "
                    f"(UMAP, when umap-learn is installed, is drawn below).",
                    title))
    sec.add(*view_blocks(ctx, rows, X, coloured, int(ctx.cfg.get("seed") or 0)))
    return sec
