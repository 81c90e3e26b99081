"""Report section "Preprocessing": resampling, ROI, intensity normalisation and what passed."""
from __future__ import annotations

from markupsafe import Markup

from radae.report.blocks import Paragraph, Section
from radae.report.sections.context import Context, plain


def preprocess_section(ctx: Context) -> Section:
    sec = Section("preprocess", "Preprocessing")
    pcfg = ctx.section_cfg("preprocess")
    summ = ctx.run.json("preprocess/summary.json")
    rois = ctx.run.table("preprocess/rois.parquet")
    if summ is None and rois is None:
        sec.available = False
        return sec.missing("preprocessing results", ctx.run.why("preprocess/summary.json", "preprocess/rois.parquet"))
    if pcfg:
        norm = pcfg.get("normalise", {})
        present = set(rois["modality"].astype(str).str.upper()) if rois is not None else set()
        rules = {
            "CT": f"CT clipped to [{plain(norm.get('hu_min'), 'g')}, {plain(norm.get('hu_max'), 'g')}] HU and scaled to [0, 1]",
            "MR": f"MR z-scored within the {norm.get('mr_region')}",
            "PET": f"PET SUV clipped at {plain(norm.get('suv_max'), 'g')} and divided by {plain(norm.get('suv_scale'), 'g')}",
        }
        used = [rules[m] for m in ("CT", "MR", "PET") if m in present]
        used += [f"{m}: {norm.get('other')}" for m in sorted(present - set(rules))]
        sec.add(Paragraph(Markup(
            "Each lesion was resampled to {} mm ({} interpolation for the image, {} for the mask) and cropped to a "
            "{} voxel ROI (x × y × z) centred on the lesion for the autoencoder. Intensity normalisation: {}. PyRadiomics "
            "receives the raw intensities on the same resampled grid, cropped to the lesion bounding box plus {} voxels."
        ).format(
            " × ".join(plain(s) for s in pcfg.get("spacing_mm", [])), pcfg.get("interpolator"), pcfg.get("mask_interpolation"),
            " × ".join(str(s) for s in pcfg.get("roi_size_vox", [])), "; ".join(used) or "n/a",
            pcfg.get("radiomics_margin_vox"),
        )))
    if summ is not None:
        k = ctx.keys
        sec.add(Paragraph(Markup("{} of {} lesions were preprocessed ({} failed; {} came from the cache of an earlier run).").format(
            k.put("preprocess.ok", summ.get("ok"), "int"), k.put("preprocess.lesions", summ.get("lesions"), "int"),
            k.put("preprocess.failed", summ.get("failed"), "int"), plain(summ.get("cache_hits"), "int"))))
    if rois is not None and "touches_border" in rois:
        n_border = int(rois["touches_border"].astype(bool).sum())
        sec.add(Paragraph(Markup("{} lesion masks touch the edge of their original image (the lesion may extend beyond the "
                                 "field of view; its volume and shape features are then underestimated).").format(
            ctx.keys.put("preprocess.touches_border", n_border, "int"))))
    return sec
