"""Report section "Downstream results": the cohort and protocol, the feature sets, then classification and survival."""
from __future__ import annotations

from markupsafe import Markup

from radae.report.blocks import Heading, Note, Paragraph, Section, Table
from radae.report.keys import key_segment
from radae.report.learned_checks import pretraining_effect_blocks
from radae.report.sections.classification import classification_blocks
from radae.report.sections.context import NO_HOLDOUT, Context, pretrain_saw_evaluation_images, unit_word
from radae.report.sections.survival import survival_blocks


def downstream_section(ctx: Context) -> Section:
    sec = Section("downstream", "Downstream results: learned vs handcrafted features")
    run = ctx.run
    summ = run.json("benchmark/summary.json")
    if summ is None:
        sec.available = False
        return sec.missing("downstream results", run.why("benchmark/summary.json") or "the benchmark stage did not run")
    cvc = summ.get("cv") or {}
    fsets = summ.get("feature_sets") or {}
    k = ctx.keys
    sec.add(Paragraph(Markup(
        "Cohort: {} ({} {}s from {} patients). Every feature set is evaluated on the same rows and the same folds: {}-fold "
        "cross-validation grouped by patient, repeated {} times, with a nested {}-fold search of hyperparameters; imputation, "
        "filtering (|r| ≥ {} dropped), scaling and selection ({}, up to {} features) are fitted inside each training fold. "
        "Intervals: fold-mean metrics with the {} corrected t interval; pooled out-of-fold metrics with a "
        "{}-replicate patient bootstrap. One paired test per pair of sets; the pre-specified primary family is adjusted "
        "alone ({}), every other pair is exploratory (Benjamini–Hochberg).").format(
        ("evaluation patients only (their images, not their labels, were used in pretraining)"
         if pretrain_saw_evaluation_images(ctx)
         else "evaluation patients only (never seen in pretraining)") if summ.get("cohort") == "evaluation_patients"
        else "the development cohort only (see External validation)" if summ.get("cohort") == "external_development" else "all patients (" + NO_HOLDOUT + ")",
        k.put("benchmark.n_rows", summ.get("n_rows"), "int"), unit_word(summ.get("unit")),
        k.put("benchmark.n_patients", summ.get("n_patients"), "int"), cvc.get("folds"), cvc.get("repeats"), cvc.get("inner_folds"),
        cvc.get("correlation_threshold"), cvc.get("selection"), cvc.get("max_features"),
        {"calibrated": "calibrated-df (K − 1, Bouckaert 2003)", "nadeau_bengio": "Nadeau–Bengio"}.get(
            cvc.get("interval"), "Nadeau–Bengio"), cvc.get("bootstrap"),
        {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(cvc.get("adjust"), cvc.get("adjust") or "n/a"))))
    if fsets:
        sec.add(Table(["feature set", "input features", "preprocessing"],
                      [[n, k.put(f"benchmark.feature_sets.{key_segment(n)}.n_features", v.get("n_features"), "int"),
                        v.get("preprocessing", "")] for n, v in fsets.items()],
                      "Feature sets compared (volume, voxel PCA and clinical are baselines that expose weak signatures).",
                      numeric=[False, True, False]))
    comps = run.table("benchmark/comparisons.csv")
    if summ.get("classification"):
        sec.add(*classification_blocks(ctx, summ["classification"], comps, cvc.get("adjust")))
    else:
        sec.add(Heading("Classification"), Note("No classification task in this run (benchmark.classification is not set)."))
    if summ.get("survival"):
        sec.add(*survival_blocks(ctx, summ["survival"], comps, cvc.get("adjust")))
    else:
        sec.add(Heading("Survival"), Note("No survival task in this run (benchmark.survival is not set, or it was refused)."))
    sec.add(*pretraining_effect_blocks(ctx))
    return sec
