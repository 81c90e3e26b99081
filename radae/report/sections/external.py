"""Report section: external validation of locked models, sample-size guardrails, and a TRIPOD+AI checklist.

Reads ``benchmark/summary.json`` (keys ``external`` and ``sample_size``) and ``benchmark/external/*.parquet``.
Numbers stated as results go through ``ctx.keys`` (key prefix ``external.``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Heading, Note, Paragraph, Section, Table
from radae.report.keys import key_segment
from radae.report.sections.context import fig as figure_block

EPV_WARN = 10.0


def _ci(entry: dict | None) -> str:
    if not entry or entry.get("estimate") is None:
        return "n/a"
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    est = f"{entry['estimate']:.3f}"
    return est if lo is None or hi is None else f"{est} [{lo:.3f}, {hi:.3f}]"


def _fmt(v, spec=".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def calibration_figure(cal: pd.DataFrame, legend: dict[str, str]):
    fig = plots.new_figure(5.0, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="ideal")
    for i, (name, g) in enumerate(cal.groupby("feature_set", sort=True)):
        ax.plot(g["predicted"], g["observed"], marker="o", color=plots.colour(i), label=legend.get(name, name))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted risk (bin mean)", ylabel="observed fraction", title="Calibration on the validation cohort")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def decision_figure(dec: pd.DataFrame):
    fig = plots.new_figure(5.6, 4.0)
    ax = fig.add_subplot()
    ref = dec[dec["feature_set"] == dec["feature_set"].iloc[0]]
    for strategy, style in (("all", dict(color="black", ls=":")), ("none", dict(color="grey", ls="--"))):
        g = ref[ref["strategy"] == strategy]
        ax.plot(g["threshold"], g["net_benefit"], label=f"treat {strategy}", lw=1.2, **style)
    for i, (name, g) in enumerate(dec[dec["strategy"] == "model"].groupby("feature_set", sort=True)):
        ax.plot(g["threshold"], g["net_benefit"], color=plots.colour(i), label=name)
    prev = float(ref.loc[ref["strategy"] == "all", "net_benefit"].iloc[0] + 0.01 / 0.99) if len(ref) else 0.5
    prev = prev if np.isfinite(prev) else 0.5
    ax.set(xlim=(0, 1), ylim=(-0.05, max(0.05, prev * 1.15)), xlabel="threshold probability", ylabel="net benefit",
           title="Decision curve on the validation cohort")
    ax.legend(fontsize=7)
    return fig


def _external_blocks(ctx, ext: dict) -> list:
    k = ctx.keys
    sp = ext.get("split") or {}
    out: list = [Paragraph(Markup(
        "Development cohort: rows with <code>{}</code> in {} ({} patients); validation cohort: {} ({} patients). The development "
        "cohort was analysed by the nested cross-validation above; then every feature set × model was refitted on all of it "
        "(imputation, filters, scaling, selection and hyperparameters by an inner patient-grouped CV), saved to "
        "<code>benchmark/models/</code> with a model card, and applied <b>once</b> to the validation cohort. {}").format(
        sp.get("column"), ", ".join(sp.get("develop") or []), k.put("external.n_develop_patients", sp.get("n_develop_patients"), "int"),
        ", ".join(sp.get("validate") or []), k.put("external.n_validate_patients", sp.get("n_validate_patients"), "int"),
        ext.get("encoder", "")))]
    for task, why in (ext.get("skipped") or {}).items():
        out.append(Note(f"{task}: not validated externally — {why}"))
    res = ext.get("results") or {}
    cls = res.get("classification") or {}
    if cls:
        rows = []
        for name, per in cls.items():
            for model, e in per.items():
                seg = f"external.classification.{key_segment(name)}.{key_segment(model)}"
                k.put(f"{seg}.auc", (e.get("auc") or {}).get("estimate"))
                epv = e.get("events_per_predictor")
                rows.append([name, model, _ci(e.get("auc")), _ci(e.get("auc_bootstrap")), _fmt((e.get("calibration_slope") or {}).get("estimate")),
                             _fmt((e.get("calibration_intercept") or {}).get("estimate")), _fmt((e.get("brier") or {}).get("estimate")),
                             f"{e.get('n')} ({e.get('n_positive')} positive)", _fmt(epv, ".1f") + (" ⚠" if epv is not None and epv < EPV_WARN else "")])
        out.append(Heading("Classification: locked models on the validation cohort"))
        out.append(Table(["feature set", "model", "AUC [95% DeLong]", "AUC [95% patient bootstrap]", "calibration slope",
                          "calibration intercept", "Brier", "n", "events / predictor (development)"], rows,
                         "One locked model per row, scored once on independent patients: DeLong's interval is valid here. "
                         "Slope < 1 means predictions too extreme (overfitting); intercept ≠ 0 means miscalibrated in the large. "
                         f"⚠: fewer than {EPV_WARN:g} development events per candidate predictor.",
                         numeric=[False, False] + [True] * 7))
        cal = ctx.run.table("benchmark/external/calibration.parquet")
        cal = None if cal is None else cal[cal["task"] == "classification"]
        if cal is not None and len(cal):
            first = cal["model"].iloc[0]
            cal = cal[cal["model"] == first]
            legend = {n: f"{n} (slope {_fmt((cls[n][first].get('calibration_slope') or {}).get('estimate'), '.2f')}, "
                         f"intercept {_fmt((cls[n][first].get('calibration_intercept') or {}).get('estimate'), '.2f')})" for n in cls if first in cls[n]}
            out.append(figure_block(calibration_figure(cal, legend), f"Observed vs predicted risk by decile of predicted risk, model {first}.",
                           "calibration curves on the validation cohort"))
        dec = ctx.run.table("benchmark/external/decision_curve.parquet")
        dec = None if dec is None else dec[dec["task"] == "classification"]
        if dec is not None and len(dec):
            first = dec["model"].iloc[0]
            out.append(figure_block(decision_figure(dec[dec["model"] == first]),
                           Markup("Net benefit = TP/n − FP/n · p<sub>t</sub>/(1 − p<sub>t</sub>) against treat-all and treat-none "
                                  "(Vickers &amp; Elkin 2006), model {}. A model helps where it lies above both.").format(first),
                           "decision curves on the validation cohort"))
    sv = res.get("survival") or {}
    if sv:
        rows = []
        for name, per in sv.items():
            for model, e in per.items():
                seg = f"external.survival.{key_segment(name)}.{key_segment(model)}"
                k.put(f"{seg}.harrell_c", (e.get("harrell_c") or {}).get("estimate"))
                epv = e.get("events_per_predictor")
                rows.append([name, model, _ci(e.get("harrell_c")), _fmt((e.get("uno_c") or {}).get("estimate")),
                             f"{e.get('n')} ({e.get('n_events')} events)", _fmt(epv, ".1f") + (" ⚠" if epv is not None and epv < EPV_WARN else "")])
        out.append(Heading("Survival: locked models on the validation cohort"))
        out.append(Table(["feature set", "model", "Harrell's C [95% patient bootstrap]", "Uno's C", "n", "events / predictor (development)"],
                         rows, "Risk scores of the locked Cox models; Uno's C uses the development cohort's censoring distribution.",
                         numeric=[False, False, True, True, True, True]))
        out += _survival_curves(ctx)
    return out


def _survival_curves(ctx) -> list:
    """Calibration and decision curves of the first survival model at the development cohort's horizon."""
    out: list = []
    for name, fn, what in (("calibration", calibration_figure, "calibration"), ("decision_curve", decision_figure, "decision curves")):
        t = ctx.run.table(f"benchmark/external/{name}.parquet")
        t = None if t is None or "task" not in t else t[t["task"] == "survival"]
        if t is None or not len(t):
            continue
        first = t["model"].iloc[0]
        t = t[t["model"] == first]
        h = float(t["horizon"].iloc[0])
        fig = fn(t, {}) if name == "calibration" else fn(t)
        text = (f"Predicted risk of an event by t = {h:g} (1 − S(t | x) of the locked {first} model) against the Kaplan-Meier risk "
                "of each decile of predicted risk, on the validation cohort." if name == "calibration" else
                f"Net benefit of treating patients whose predicted risk by t = {h:g} exceeds the threshold (Kaplan-Meier risk among "
                f"them, as the dcurves package), model {first}, against treat-all and treat-none.")
        out.append(figure_block(fig, text, f"survival {what} on the validation cohort (t = {h:g})"))
    return out


def _sample_size_blocks(ss: dict) -> list:
    rows = []
    for task, per in ss.items():
        for name, e in per.items():
            epv = e.get("events_per_predictor")
            rows.append([task, name, e.get("events"), e.get("candidate_predictors"), _fmt(epv, ".1f"), e.get("warning") or ""])
    if not rows:
        return []
    low = sum(1 for r in rows if r[5])
    return [Table(["task", "feature set", "events", "candidate predictors after selection", "events per predictor", "warning"], rows,
                  f"Events = the smaller class (classification) or deaths (survival) of the analysed cohort; candidate predictors = "
                  f"what reaches the model after selection (benchmark.max_features plus forced clinical columns). "
                  f"{low} of {len(rows)} below {EPV_WARN:g}: such models are likely overfitted and their CV estimates unstable.",
                  numeric=[False, False, True, True, True, False])]


def tripod_rows(ctx, bsum: dict) -> list[list[str]]:
    """TRIPOD+AI (Collins et al. 2024) items and whether this run covers them (yes / partly / user)."""
    cfg = ctx.section_cfg("benchmark") or {}
    ext = bsum.get("external")
    harm = cfg.get("harmonise")
    cov = [
        ("5-6 Data source, participants", "partly", "cohort counts in the data section; eligibility and dates are the user's"),
        ("7 Data preparation (preprocessing)", "yes", "preprocess section: resampling, normalisation, ROI size"),
        ("8 Outcome definition", "partly", f"outcome columns named ({', '.join(k for k in ('classification', 'survival') if bsum.get(k))}); their clinical definition is the user's"),
        ("9 Predictors", "yes", "feature sets and extraction settings (features section, IBSI check)"),
        ("10 Sample size", "yes", "events per candidate predictor per set, warning below 10"),
        ("11 Missing data", "yes", "median imputation inside each training fold; failures.csv lists every dropped case"),
        ("12a Data used for development/evaluation", "yes", "patient-grouped nested CV" + ("; separate validation cohort" if ext else "")),
        ("12c Model type, building, tuning", "yes", "pipeline steps, selection and inner-CV hyperparameters recorded per fold and in model cards"),
        ("12d Heterogeneity across clusters/sites", "yes" if harm else "no", f"ComBat by {harm.get('batch')} fitted in training folds only" if harm else "no site harmonisation configured"),
        ("12e Performance measures", "yes", "discrimination with CIs, calibration slope/intercept, Brier; survival C, td-AUC, IBS"),
        ("12f Model updating / recalibration", "no", "locked models are applied unchanged"),
        ("12g Evaluation of clinical utility", "yes" if ext else "no", "decision curve on the validation cohort" if ext else "needs benchmark.external"),
        ("14 Open science: code, model", "yes" if ext else "partly", "saved models + model cards in benchmark/models/" if ext else "run folder and config; no locked model saved"),
        ("15 Patient and public involvement", "user", "not something a pipeline can record"),
        ("20 Participants (flow, characteristics)", "partly", "counts per cohort; clinical characteristics table is the user's"),
        ("23a Model performance", "yes", "downstream section" + (" and external validation" if ext else "")),
        ("23b Performance across subgroups/sites", "no", "not computed per subgroup"),
        ("24 Model specification", "yes" if ext else "no", "features, coefficients, preprocessing in each model card" if ext else "needs benchmark.external"),
        ("External validation", "yes" if ext else "no", "locked models applied once to an independent cohort" if ext else "internal validation only"),
        ("Encoder independence", "yes" if ext else "partly", (ext or {}).get("encoder", "see the pretraining section")),
    ]
    return [list(c) for c in cov]


def external_section(ctx) -> Section:
    """External validation (when configured), sample-size guardrails and the TRIPOD+AI checklist."""
    sec = Section("external", "External validation, sample size and reporting checklist")
    bsum = ctx.run.json("benchmark/summary.json")
    if bsum is None:
        sec.available = False
        return sec.missing("external validation and sample-size checks", ctx.run.why("benchmark/summary.json") or "the benchmark stage did not run")
    ext = bsum.get("external")
    if ext:
        sec.add(*_external_blocks(ctx, ext))
    else:
        sec.add(Note("No external validation configured (benchmark.external): every number in this report is internal "
                     "(cross-validated) and optimistic relative to a new cohort."))
    sec.add(Heading("Sample size"))
    sec.add(*_sample_size_blocks(bsum.get("sample_size") or {}))
    sec.add(Heading("TRIPOD+AI checklist (what this run covers)"))
    sec.add(Table(["item", "covered", "where / why"], tripod_rows(ctx, bsum),
                  "yes = reported by this run; partly = part of it; no = not done by this run; user = only the authors can report it.",
                  wide=[False, False, True], collapsed=False))
    return sec
