"""Report section "Run summary": what was compared and the headline numbers (built after the result sections)."""
from __future__ import annotations

from markupsafe import Markup

from radae.report import forest as glance
from radae.report.blocks import Paragraph, Section
from radae.report.keys import key_segment
from radae.report.sections.context import Context, first_entry, unit_word


def summary_section(ctx: Context) -> Section:
    """What was compared and the headline in one sentence, with CIs (built after the result sections)."""
    sec = Section("summary", "Run summary")
    run = ctx.run
    cases = run.table("ingest/cases.parquet")
    bsum = run.json("benchmark/summary.json")
    k = ctx.keys
    if bsum is None:
        sec.add(Paragraph(Markup("No benchmark results in this run ({}), so there is no headline comparison. {}").format(
            run.why("benchmark/summary.json") or "the benchmark stage did not run",
            Markup("The run covers {} lesions from {} patients.").format(k.put("data.lesions", len(cases), "int"),
                                                                         k.put("data.patients", cases["patient_id"].nunique(), "int"))
            if cases is not None else "")))
    else:
        sentences = [s for s in (_headline(ctx, bsum, "classification"), _headline(ctx, bsum, "survival")) if s]
        if sentences:
            sec.add(Paragraph(Markup(" ").join(sentences)))
        else:
            sec.add(Paragraph("The benchmark ran but produced no task results (see the downstream section)."))
        comps = run.table("benchmark/comparisons.csv")
        for task in ("classification", "survival"):
            sec.add(*glance.primary_blocks(k, bsum, task, comps))
        sets = list((bsum.get("feature_sets") or {}).keys())
        cvc = bsum.get("cv") or {}
        tasks = []
        if bsum.get("classification"):
            tasks.append(f"classification of {bsum['classification'].get('label')}")
        if bsum.get("survival"):
            tasks.append(f"survival ({bsum['survival'].get('time')}, {bsum['survival'].get('event')})")
        sec.add(Paragraph(Markup("Compared: feature sets {} with {} for {}; {}-fold × {} patient-grouped nested cross-validation "
                                 "(seed {}).").format(", ".join(sets) or "none", ", ".join((cvc.get("models") or []) + (cvc.get("survival_models") or [])) or "n/a",
                                                      " and ".join(tasks) or "no task", cvc.get("folds"), cvc.get("repeats"), cvc.get("seed"))))
        if bsum.get("headline"):
            sec.add(Paragraph(Markup("Benchmark stage's own one-line summary: <em>{}</em>").format(bsum["headline"])))
    stages = []
    for name in ("ingest", "preprocess", "pretrain", "extract", "benchmark"):
        meta = run.stage_meta(name) or {}
        stages.append(f"{name}: {meta.get('status', 'not run')}")
    sec.add(Paragraph("Stages: " + "; ".join(stages) + "."))
    return sec


def _headline(ctx: Context, bsum: dict, task: str) -> Markup | None:
    """"On N patients, learned features reached AUC m [lo, hi] vs handcrafted m [lo, hi] (adjusted p = x)."""
    t = bsum.get(task)
    if not t or not t.get("results"):
        return None
    main, label = ("auc", "AUC") if task == "classification" else ("harrell_c", "Harrell's C")
    results = t["results"]
    pair = [s for s in ("learned", "handcrafted") if s in results]
    if len(pair) < 2:  # no learned-vs-handcrafted pair: the best set against the first other one
        best = (t.get("best") or {}).get("feature_set")
        pair = [best] + [s for s in results if s != best][:1] if best in results else list(results)[:2]
    model = first_entry(results[pair[0]])[0]
    k = ctx.keys
    parts = []
    for i, fset in enumerate(pair):
        entry = ((results.get(fset) or {}).get(model) or {}).get(main) or {}
        key = f"{task}.{key_segment(fset)}.{key_segment(model)}.{main}"
        parts.append(Markup("{} features {}{} (95% CI {}–{})").format(
            fset, f"{label} " if i == 0 else "", k.put(f"{key}.mean", entry.get("mean"), ".3f"),
            k.put(f"{key}.ci_low", entry.get("ci_low"), ".3f"), k.put(f"{key}.ci_high", entry.get("ci_high"), ".3f")))
    outcome = t.get("label") if task == "classification" else f"{t.get('time')} / {t.get('event')}"
    cvc = bsum.get("cv") or {}
    sentence = Markup("<strong>{}</strong> ({} patients, {} {}s; {}, {}-fold × {} cross-validation): {}").format(
        outcome, k.put(f"{task}.n_patients", t.get("n_patients"), "int"), k.put(f"{task}.n_rows", t.get("n_rows"), "int"),
        unit_word(bsum.get("unit")), model, cvc.get("folds"), cvc.get("repeats"), Markup(" vs ").join(parts))
    comps = ctx.run.table("benchmark/comparisons.csv")
    adjust = (bsum.get("cv") or {}).get("adjust")
    if comps is not None and len(pair) == 2 and "task" in comps:
        c = comps[(comps["task"] == task) & (comps["model"] == model) & (comps["test"] != "delong")
                  & (((comps["set_a"] == pair[0]) & (comps["set_b"] == pair[1])) | ((comps["set_a"] == pair[1]) & (comps["set_b"] == pair[0])))]
        if len(c):
            r = c.iloc[0]
            key = f"comparisons.{task}.{key_segment(model)}.{key_segment(r['test'])}.{key_segment(r['set_a'])}__vs__{key_segment(r['set_b'])}"
            col = "p_adjusted" if "p_adjusted" in r else ("p_holm" if adjust == "holm" else "p_bh")
            sentence += Markup("; paired difference {} − {} = {} ({}-adjusted p = {})").format(
                r["set_a"], r["set_b"], k.put(f"{key}.diff", r["diff"], ".3f"), {"holm": "Holm", "bh": "BH"}.get(adjust, adjust),
                k.put(f"{key}.p_adjusted", r[col], ".3g"))
    ctrl = t.get("shuffled_control") or {}
    cset, cper = first_entry(ctrl)
    if cper:
        cmodel, centry = first_entry(cper)
        sentence += Markup("; shuffled-label control ({}) {}").format(cset,
            k.put(f"{task}.shuffled_control.{key_segment(cset)}.{key_segment(cmodel)}.{main}.mean", (centry.get(main) or {}).get("mean"), ".3f"))
    return sentence + Markup(".")
