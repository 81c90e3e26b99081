"""Report section "Data": the cohort, its outcomes, spacing and lesion volumes, and every failed case."""
from __future__ import annotations

import numpy as np
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Note, Paragraph, Section
from radae.report.keys import key_segment
from radae.report.learned_checks import oracle_blocks
from radae.report.sections.context import (BAD_BENCHMARK, CONFIG, Context, fig, outcome_spec, patient_outcomes, plain,
                                           pretrain_saw_evaluation_images, table_from_frame)


def data_section(ctx: Context) -> Section:
    sec = Section("data", "Data")
    k = ctx.keys
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None:
        sec.available = False
        return sec.missing("the cohort description", ctx.run.why("ingest/cases.parquet") or "the ingest stage did not run")
    n_lesions, n_patients = len(cases), cases["patient_id"].nunique()
    per_patient = cases.groupby("patient_id").size()
    n_eval = cases.loc[cases["is_evaluation"].astype(bool), "patient_id"].nunique() if "is_evaluation" in cases else 0
    mods = cases.drop_duplicates(["patient_id", "modality"])["modality"].value_counts().sort_index()
    sec.add(Paragraph(Markup(
        "The manifest lists {} lesions in {} patients ({} with more than one lesion); "
        "{} patients are evaluation patients (used for the benchmark; {}). "
        "Modalities (patients per modality): {}."
    ).format(
        k.put("data.lesions", n_lesions, "int"), k.put("data.patients", n_patients, "int"),
        k.put("data.multi_lesion_patients", int((per_patient > 1).sum()), "int"),
        k.put("data.evaluation_patients", n_eval, "int"),
        "their images, without labels, were also used for pretraining" if pretrain_saw_evaluation_images(ctx)
        else ("none held out of pretraining" if n_eval == 0 else "held out of pretraining"),
        Markup(", ").join(Markup("{} {}").format(m, k.put(f"data.modality.{key_segment(m)}", n, "int")) for m, n in mods.items()),
    )))

    dcfg = ctx.section_cfg("data") or {}
    col = dcfg.get("cohort_column", "cohort")
    if dcfg.get("validation_manifest") and col in cases:  # the second manifest: one patient in one cohort, never pretrained on
        val = cases.loc[cases[col] == "validation", "patient_id"].nunique()
        sec.add(Paragraph(Markup(
            "The validation cohort comes from its own manifest (data.validation_manifest, column {} = validation): {} "
            "patients, every one an evaluation patient ({}); the other {} patients are the development cohort."
        ).format(col, k.put("data.validation_patients", val, "int"),
                 "yet pretraining included them: pretrain.include_evaluation_patients" if pretrain_saw_evaluation_images(ctx)
                 else "held out of pretraining", n_patients - val)))
    sec.add(*oracle_blocks(ctx))

    sec.add(*_outcome_blocks(ctx))  # outcomes, at patient level

    rois = ctx.run.table("preprocess/rois.parquet")
    if rois is None:
        sec.missing("spacing and lesion-volume distributions", ctx.run.why("preprocess/rois.parquet") or "preprocess did not run")
    else:
        sp = {ax: rois[f"orig_spacing_{ax}"].to_numpy(float) for ax in "xyz" if f"orig_spacing_{ax}" in rois}
        if sp:
            sec.add(fig(plots.strip_by_group(sp, "voxel spacing (mm)", "Original voxel spacing per axis"),
                        f"Voxel spacing of the original images, one point per lesion (n = {len(rois)} lesions). "
                        f"All lesions are resampled to the preprocessing grid below.", "original spacing per axis"))
        vol = rois["lesion_volume_ml"].to_numpy(float)
        sec.add(Paragraph(Markup("Lesion volume, median [IQR]: {} mL (n = {} lesions that passed preprocessing).").format(
            Markup("{} [{}, {}]").format(
                k.put("data.volume_ml.median", np.nanmedian(vol), ".3g"),
                k.put("data.volume_ml.q1", np.nanpercentile(vol, 25), ".3g"),
                k.put("data.volume_ml.q3", np.nanpercentile(vol, 75), ".3g")),
            len(vol))))
        sec.add(fig(plots.histogram(vol, "lesion volume (mL, log scale)", "Lesion volume", log_x=True),
                    f"Lesion volumes measured on the original-grid mask (n = {np.isfinite(vol).sum()} lesions).",
                    "histogram of lesion volumes"))

    sec.add(*failures_blocks(ctx))
    return sec


def _outcome_blocks(ctx: Context) -> list:
    """The configured outcomes at patient level: positives of the label, events and follow-up of the survival task."""
    k = ctx.keys
    spec = outcome_spec(ctx)
    pts = patient_outcomes(ctx)
    if pts is not None and (spec["label"] or spec["time"]):
        rows = []
        if spec["label"] and spec["label"] in pts:
            y = pts[spec["label"]]
            known = y.notna()
            rows.append(Markup("{}: {} of {} patients with a known label are positive ({} unlabeled).").format(
                spec["label"], k.put("data.outcome.positives", int((y[known] == 1).sum()), "int"),
                k.put("data.outcome.labelled_patients", int(known.sum()), "int"), int((~known).sum())))
        if spec["time"] and spec["time"] in pts and spec["event"] in pts:
            t, e = pts[spec["time"]], pts[spec["event"]]
            known = t.notna() & e.notna()
            rows.append(Markup("{} / {}: {} events in {} patients with follow-up; median observed time {} (range {}–{}).").format(
                spec["time"], spec["event"], k.put("data.outcome.events", int((e[known] == 1).sum()), "int"),
                k.put("data.outcome.survival_patients", int(known.sum()), "int"),
                plain(t[known].median(), ".4g"), plain(t[known].min(), ".4g"), plain(t[known].max(), ".4g")))
        return [Paragraph(r) for r in rows]
    if pts is not None:
        why = ctx.run.notes.get(CONFIG, "")
        return [Note(f"Not available: outcomes — {CONFIG} is {why}." if why.startswith(BAD_BENCHMARK) else
                     "No outcome is configured (benchmark.classification / benchmark.survival), so none is described.")]
    return []


def failures_blocks(ctx: Context) -> list:
    fails = ctx.run.table("failures.csv")
    if fails is None:
        return [Note(f"Not available: the failure list — {ctx.run.why('failures.csv')}.")]
    k = ctx.keys
    if fails.empty:
        return [Paragraph(Markup("Failures: {} — every case passed every stage that ran.").format(k.put("data.failures.total", 0, "int")))]
    by_stage = fails.groupby("stage", sort=False).size()
    out = [Paragraph(Markup("Failures: {} case-stage failures ({}); each is listed with its message below.").format(
        k.put("data.failures.total", len(fails), "int"),
        Markup(", ").join(Markup("{} in {}").format(k.put(f"data.failures.{key_segment(s)}", n, "int"), s) for s, n in by_stage.items()),
    ))]
    out.append(table_from_frame(fails[["case_id", "stage", "message", "file"]].fillna(""), "Cases that failed (run-level failures.csv)",
                                max_rows=ctx.max_rows, wide=("message",)))
    return out
