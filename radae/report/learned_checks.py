"""Is the learned representation a fair contender in this run? Pretraining diagnostics and the report's red banner.

- :func:`diagnostics_blocks`: the table of ``pretrain/diagnostics.json`` (denoising vs a blur and a mean-image
  baseline per noise level, convergence verdict) for the pretraining section.
- :func:`banner_messages`: the warnings shown in red at the top of the report: the encoder did not converge, or
  no learned feature set beats its shuffled-label control (its AUC / C-index confidence interval does not lie above
  the control's mean), said plainly.
"""
from __future__ import annotations

from markupsafe import Markup

from radae.report.blocks import Note, Paragraph, Table

LEARNED_SETS = ("learned", "learned_pooled", "anomaly")
METRIC_OF_TASK = {"classification": "auc", "survival": "c_index"}


def _fmt(v, spec=".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def diagnostics_blocks(ctx) -> list:
    diag = ctx.run.json("pretrain/diagnostics.json")
    if diag is None:
        return [Note("Not available: pretrain/diagnostics.json (written by pretraining since this radae version).")]
    rows = []
    for level, row in (diag.get("levels") or {}).items():
        cells = [level]
        for b in ("noisy", "recon", "blur", "mean_image"):
            v = row.get(b) or {}
            cells.append(f"{_fmt(v.get('psnr_db'))} / {_fmt(v.get('ssim'), '.3f')}" if v else "—")
        cells += [_fmt(row.get("denoise_gain_db")), _fmt(row.get("gain_over_blur_db"))]
        rows.append(cells)
    conv = diag.get("convergence") or {}
    k = ctx.keys
    verdict = "converged" if conv.get("converged") else "did NOT converge"
    why = "; ".join(conv.get("reasons") or [])
    return [
        Table(["input", "noisy input", "reconstruction", "Gaussian blur (σ 1 voxel)", "training mean image",
               "denoise gain (dB)", "gain over blur (dB)"], rows,
              Markup("Denoising on {} {} items (pretrain/diagnostics.json): PSNR (dB) / SSIM against the clean input, per noise "
                     "level of the run's noise model. Denoise gain = reconstruction − noisy input; > 0 means the "
                     "autoencoder removes noise.").format(diag.get("items"), diag.get("split"))),
        Paragraph(Markup("Convergence: the encoder {} (rule: {}){}. Denoise gain at the highest noise level: {} dB.").format(
            verdict, conv.get("rule", "n/a"), f" — {why}" if why else "",
            k.put("pretrain.denoise_gain_db_at_highest", diag.get("denoise_gain_db_at_highest"), ".2f"))),
    ]


def oracle_blocks(ctx) -> list:
    """The synthetic cohort's oracle AUC (``synth/oracle.json``): the ceiling any feature set can reach on average."""
    if not ctx.run.exists("synth/oracle.json"):  # not a synthetic cohort: nothing to say, nothing missing
        return []
    oracle = ctx.run.json("synth/oracle.json")
    if not oracle or oracle.get("oracle_auc") is None:
        return []
    effects = ", ".join(oracle.get("class_effects") or {})
    return [Paragraph(Markup(
        "Synthetic cohort: the class is planted as a mix of lesion properties ({}), each blurred by patient-level noise. "
        "The Bayes-optimal classifier on these hidden properties reaches an oracle AUC of {} ({} level): no feature "
        "set computed from the images can be expected to exceed it.").format(
        effects, ctx.keys.put("data.oracle_auc", oracle["oracle_auc"], ".3f"), oracle.get("unit", "lesion")))]


EFFECT_PAIRS = (("learned", "random_encoder", "pretraining (bottleneck)"),
                ("learned_pooled", "random_pooled", "pretraining (pooled encoder features)"),
                ("learned", "handcrafted", "learned vs handcrafted"),
                ("learned_pooled", "handcrafted", "pooled learned vs handcrafted"))


def pretraining_effect_blocks(ctx) -> list:
    """Learned minus its untrained-encoder twin, beside learned minus handcrafted (benchmark/comparisons.csv)."""
    if not ctx.run.exists("benchmark/comparisons.csv"):
        return []
    comps = ctx.run.table("benchmark/comparisons.csv")
    if comps is None or comps.empty or not {"set_a", "set_b", "diff"} <= set(comps.columns):
        return []
    rows = []
    for a, b, what in EFFECT_PAIRS:
        for task, g in comps.groupby("task", sort=False):
            hit = g[((g["set_a"] == a) & (g["set_b"] == b)) | ((g["set_a"] == b) & (g["set_b"] == a))]
            if hit.empty:
                continue
            r = hit.iloc[0]
            sign = 1.0 if r["set_a"] == a else -1.0
            lo, hi = sorted((sign * float(r.get("ci_low", float("nan"))), sign * float(r.get("ci_high", float("nan")))))
            p = r.get("p_adjusted", r.get("p_raw"))
            rows.append([what, str(task), f"{a} − {b}", str(r.get("metric", "")), f"{sign * float(r['diff']):+.3f}",
                         f"[{lo:+.3f}, {hi:+.3f}]", _fmt(None if p is None else float(p), ".3g"), str(r.get("role", ""))])
    if not rows:
        return []
    return [Table(["question", "task", "difference", "metric", "estimate", "95% CI", "adjusted p", "role"], rows,
                  "Does pretraining add anything? Each learned set minus the same architecture and heads with untrained "
                  "(seeded) weights, beside learned minus handcrafted (benchmark/comparisons.csv, same folds).")]


def _ci_above_control(res: dict, ctrl: dict, metric: str) -> bool | None:
    """Best model's interval lower bound > the same model's shuffled-label mean; None if not measured."""
    best = None
    for model, metrics in (res or {}).items():
        m = (metrics or {}).get(metric) or {}
        c = (((ctrl or {}).get(model) or {}).get(metric) or {}).get("mean")
        if m.get("ci_low") is None or c is None:
            continue
        ok = m["ci_low"] > c
        best = ok if best is None else (best or ok)
    return best


def banner_messages(ctx) -> list[str]:
    out = []
    diag = ctx.run.json("pretrain/diagnostics.json") if ctx.run.exists("pretrain/diagnostics.json") else None
    conv = (diag or {}).get("convergence") or {}
    if diag is not None and not conv.get("converged", True):
        out.append("The encoder did not converge: " + ("; ".join(conv.get("reasons") or []) or "see the pretraining section")
                   + ". Learned features from an unconverged encoder understate what pretraining can do.")
    summ = ctx.run.json("benchmark/summary.json") or {}
    for task, metric in METRIC_OF_TASK.items():
        t = summ.get(task) or {}
        results, control = t.get("results") or {}, t.get("shuffled_control") or {}
        verdicts = {s: _ci_above_control(results.get(s), control.get(s), metric) for s in LEARNED_SETS if s in results}
        measured = {s: v for s, v in verdicts.items() if v is not None}
        if measured and not any(measured.values()):
            out.append(f"{task}: learned features carry no detectable signal in this run — no learned feature set "
                       f"({', '.join(measured)}) has a {metric} confidence interval above its shuffled-label control.")
        elif measured and not measured.get("learned", True):
            passing = [s for s, v in measured.items() if v]
            out.append(f"{task}: the bottleneck code (learned) does not beat its shuffled-label control; "
                       f"{', '.join(passing)} does.")
    return out
