"""The benchmark at a glance: the primary comparison as one sentence, a forest plot, numbers at risk.

- :func:`primary_blocks` - for one task: the pre-specified comparison (``summary.json`` ``primary`` block) as one
  sentence with key numbers, the permutation p-values when the permutation test ran, and a two-panel forest
  plot: every feature set's fold-mean metric with its interval (the shuffled-label control drawn in grey and
  labelled), and every set's paired difference vs the reference set of the primary comparison (handcrafted by
  default), primary pairs in colour.
- :func:`numbers_at_risk` - the numbers-at-risk table under Kaplan-Meier curves (patients).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup

from radae.report import plots
from radae.report.blocks import Figure, Paragraph, Table
from radae.report.keys import KeyNumbers, key_segment

LABELS = {"auc": "AUC", "harrell_c": "Harrell's C"}


def _p_text(k: KeyNumbers, key: str, p) -> Markup:
    if p is not None and np.isfinite(p) and p <= 1e-4:
        return Markup("&lt; {}").format(k.put(key, 1e-4, ".1g"))
    return Markup("= {}").format(k.put(key, p, ".3g"))


def primary_sentence(k: KeyNumbers, task: str, block: dict) -> Markup | None:
    """'Primary comparison (AUC, family of 2, Holm): learned 0.71 vs handcrafted 0.65, difference +0.06 [..], adjusted p = ..'."""
    pairs = block.get("pairs") or []
    if not pairs:
        return Markup("Primary comparison: not available — {}.").format(
            "the sets named by benchmark.primary ({}) are not both in this run".format(" vs ".join(block.get("declared") or [])))
    metric = LABELS.get("auc" if task == "classification" else "harrell_c")
    bits = []
    for r in pairs:
        key = f"primary.{task}.{key_segment(r['set_a'])}__vs__{key_segment(r['set_b'])}"
        bits.append(Markup("{} {} vs {} {}, difference {} [95% CI {}, {}], adjusted p {} ({}; {})").format(
            r["set_a"], k.put(f"{key}.estimate_a", r.get("estimate_a"), ".3f"), r["set_b"], k.put(f"{key}.estimate_b", r.get("estimate_b"), ".3f"),
            k.put(f"{key}.diff", r.get("diff"), "+.3f"), k.put(f"{key}.ci_low", r.get("ci_low"), "+.3f"),
            k.put(f"{key}.ci_high", r.get("ci_high"), "+.3f"), _p_text(k, f"{key}.p_adjusted", r.get("p_adjusted")),
            "significant" if r.get("significant") else "not significant", str(r.get("test", "")).replace("_", " ")))
    adjust = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(block.get("adjust"), block.get("adjust"))
    text = Markup("<strong>Primary comparison</strong> ({}, {}; family of {}, {}-adjusted): ").format(
        task, metric, len(pairs), adjust) + Markup("; ").join(bits) + Markup(".")
    perm = block.get("permutation") or {}
    if perm.get("status") == "done":
        ps = [Markup("{} p {}").format(s, _p_text(k, f"primary.{task}.permutation.{key_segment(s)}", v.get("p_value")))
              for s, v in (perm.get("sets") or {}).items()]
        text += Markup(" Permutation test of the whole nested CV ({} patient-level label permutations): ").format(
            perm.get("n_permutations")) + Markup(", ").join(ps) + Markup(".")
    else:
        text += Markup(" Permutation test: not run ({}).").format(perm.get("reason") or "benchmark.permutations is 0")
    return text


def forest_rows(results: dict, control: dict, comps: pd.DataFrame | None, task: str, main: str, reference: str):
    """(metric rows, difference rows): (label, estimate, low, high, kind) with kind primary|set|control."""
    prim_sets = set()
    diff_rows = []
    if comps is not None and len(comps) and "role" in comps:
        c = comps[comps["task"] == task]
        model = c["model"].iloc[0] if len(c) else None
        c = c[c["model"] == model]
        for r in c.itertuples(index=False):
            if reference not in (r.set_a, r.set_b):
                continue
            sign = 1.0 if r.set_b == reference else -1.0
            other = r.set_a if r.set_b == reference else r.set_b
            lo, hi = sorted((sign * r.ci_low, sign * r.ci_high))
            kind = "primary" if r.role == "primary" else "set"
            if kind == "primary":
                prim_sets.update((r.set_a, r.set_b))
            diff_rows.append((f"{other} − {reference}", sign * r.diff, lo, hi, kind))
    rows = []
    for fset, per_model in results.items():
        model, entry = next(iter(per_model.items()))
        e = (entry or {}).get(main) or {}
        rows.append((fset, *(np.nan if e.get(x) is None else float(e[x]) for x in ("mean", "ci_low", "ci_high")),
                     "primary" if fset in prim_sets else "set"))
    for fset, per_model in (control or {}).items():
        model, entry = next(iter(per_model.items()))
        e = (entry or {}).get(main) or {}
        rows.append((f"control: shuffled labels ({fset})", *(np.nan if e.get(x) is None else float(e[x]) for x in ("mean", "ci_low", "ci_high")),
                     "control"))
    return rows, diff_rows


def forest_figure(rows: Sequence[tuple], diff_rows: Sequence[tuple], metric_label: str, reference: str):
    """Two panels: metric per set (chance line 0.5) and difference vs ``reference`` (line at 0)."""
    n = max(len(rows), len(diff_rows), 1)
    fig = plots.new_figure(9.0, 0.36 * n + 1.4)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    style = {"primary": (plots.colour(1), "o"), "set": (plots.colour(0), "o"), "control": ("#888888", "s")}
    for ax, data, ref, xlabel in ((axes[0], rows, 0.5, f"{metric_label} (fold mean, 95% CI)"),
                                  (axes[1], diff_rows, 0.0, f"difference in {metric_label} vs {reference} (95% CI)")):
        for i, (label, est, lo, hi, kind) in enumerate(data):
            c, m = style[kind]
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [i, i], color=c, lw=2.2 if kind == "primary" else 1.4)
            ax.plot([est], [i], m, color=c, ms=6 if kind == "primary" else 5)
        ax.axvline(ref, ls="--", color="#999999", lw=1)
        ax.set_yticks(np.arange(len(data)), [d[0] for d in data], fontsize=8)
        ax.set_ylim(len(data) - 0.5, -0.5) if data else None
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_xlim(0.0, 1.0)
    axes[0].set_title("each set (grey squares: shuffled-label control)", fontsize=9)
    axes[1].set_title("paired differences (red: primary)", fontsize=9)
    return fig


def primary_blocks(k: KeyNumbers, bsum: dict, task: str, comps: pd.DataFrame | None) -> list:
    """The sentence and the forest plot of one task (nothing if the task did not run)."""
    t = bsum.get(task)
    if not t or not t.get("results"):
        return []
    main = "auc" if task == "classification" else "harrell_c"
    block = t.get("primary") or {}
    out: list = []
    sentence = primary_sentence(k, task, block) if block else None
    if sentence:
        out.append(Paragraph(sentence))
    reference = (block.get("declared") or ["", "handcrafted"])[1] or "handcrafted"
    rows, diffs = forest_rows(t["results"], t.get("shuffled_control"), comps, task, main, reference)
    cvc = bsum.get("cv") or {}
    fig = forest_figure(rows, diffs, LABELS[main], reference)
    out.append(Figure(plots.to_data_uri(fig), Markup(
        "Forest plot ({}): left, every feature set's fold-mean {} with its {} interval, the shuffled-label control in grey "
        "(it should sit on the chance line); right, each set's paired difference vs {} on the same folds (one corrected t-test per "
        "pair), the pre-specified primary comparison in red, the others exploratory.").format(
        task, LABELS[main], str(cvc.get("interval", "")).replace("_", "–"), reference), f"forest plot, {task}"))
    return out


def numbers_at_risk(km: pd.DataFrame, times: Sequence[float]) -> tuple[list[str], list[list]]:
    """Columns and rows (one per panel and group) of patients still at risk at each of ``times``.

    ``km.parquet`` holds ``at_risk`` at each KM time; at risk at t = the at-risk count at the first KM time >= t
    (0 past the last).
    """
    rows = []
    for (fset, model, group), g in km.groupby(["feature_set", "model", "group"], sort=False):
        g = g.sort_values("time")
        tt, ar = g["time"].to_numpy(float), g["at_risk"].to_numpy(float)
        vals = []
        for t in times:
            i = np.searchsorted(tt, t, side="left")
            vals.append(int(ar[i]) if i < len(tt) and np.isfinite(ar[i]) else 0)
        rows.append([f"{fset} / {model}", f"{group} risk", *vals])
    return ["panel", "group", *(f"t = {t:.4g}" for t in times)], rows


def numbers_at_risk_table(km: pd.DataFrame, time_label: str) -> Table | None:
    if km is None or km.empty:
        return None
    t_max = float(km["time"].max())
    times = [float(x) for x in np.round(np.linspace(0.0, t_max, 5)[:-1], 6)]
    cols, rows = numbers_at_risk(km, times)
    return Table(cols, rows, f"Numbers at risk (patients) in each risk group at {time_label} = " + ", ".join(f"{t:.4g}" for t in times) + ".",
                 numeric=[False, False] + [True] * len(times))
