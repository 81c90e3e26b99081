"""Paired comparisons of feature sets inside repeated CV: one test per pair, a pre-specified primary family.

Each pair of feature sets (same task, model and folds) gets ONE test: the corrected resampled t-test of the
per-fold differences of the main metric (:func:`radae.evaluate.inference.cv_ttest`; ``calibrated`` below 100
patients by default). When every fold gives the same difference (so the t statistic is undefined) a patient
bootstrap of the pooled out-of-fold predictions gives the interval and a floored p-value instead.

Multiplicity: the *primary* family is declared before looking at the data (``benchmark.primary: [a, b]``,
default learned vs handcrafted) plus "the best learned-feature set vs b" when that is another set; it is
adjusted alone (Holm by default, ``benchmark.adjust``). Every other pair is *exploratory*: Benjamini-Hochberg
over the task's exploratory pairs, and shown collapsed in the report.
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from radae.evaluate import inference, multiplicity

COLUMNS = ["task", "model", "metric", "test", "role", "set_a", "set_b", "estimate_a", "estimate_b", "diff", "ci_low",
           "ci_high", "stat", "p_raw", "p_holm", "p_bh", "p_adjusted", "significant", "n", "n_undefined"]
# the feature sets made by the pretrained autoencoder alone (candidates for "the best learned-feature set"): sets that
# mix in handcrafted or clinical columns answer another question and stay exploratory
LEARNED_SETS = ("learned", "learned_pooled", "anomaly")


def primary_pairs(names: Sequence[str], primary: tuple[str, str], main_means: Mapping[str, float]) -> list[tuple[str, str]]:
    """The primary family: (a, b) as configured, plus (best learned-feature set, b) if that is another set.

    Pairs whose sets are not in ``names`` are left out (the report says so).
    """
    a, b = primary
    out = [(a, b)] if a in names and b in names else []
    learned = [s for s in names if s in LEARNED_SETS and s != b and np.isfinite(main_means.get(s, np.nan))]
    if b in names and learned:
        best = max(learned, key=lambda s: main_means[s])
        if (best, b) not in out:
            out.append((best, b))
    return out


def _paired(fa: dict, fb: dict, main: str, method: str, folds: int) -> tuple[inference.CVInference, float, float, int]:
    common = sorted(set(fa) & set(fb))
    diffs = [fa[k].metrics.get(main, np.nan) - fb[k].metrics.get(main, np.nan) for k in common]
    n_train = float(np.mean([fa[k].n_train for k in common]))
    n_test = float(np.mean([fa[k].n_test for k in common]))
    r = inference.cv_ttest(diffs, n_train, n_test, folds, method)
    ma = float(np.nanmean([fa[k].metrics.get(main, np.nan) for k in common]))
    mb = float(np.nanmean([fb[k].metrics.get(main, np.nan) for k in common]))
    return r, ma, mb, len(common)


def compare(task: str, results: Mapping[tuple[str, str, bool], list], main: str, method: str, folds: int,
            primary: tuple[str, str], adjust: str, oof: Callable[[list], np.ndarray], pooled_stat: Callable[..., float],
            pooled_arrays: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[tuple, np.ndarray]], n_boot: int,
            rng: np.random.Generator) -> pd.DataFrame:
    """Every pair of sets per model, one row each (``COLUMNS``), primary pairs oriented as declared.

    ``oof(results)``: each row's mean out-of-fold score; ``pooled_arrays(score_a, score_b, rows)`` the arrays of
    ``pooled_stat`` (the difference of the pooled metric) on ``rows`` and the patient of each array entry, for the
    bootstrap fallback (one entry per patient when the patient is the unit).
    """
    names = list(dict.fromkeys(k[0] for k in results if not k[2]))
    models = list(dict.fromkeys(k[1] for k in results if not k[2]))
    rows = []
    for mi, model in enumerate(models):
        means = {s: float(np.nanmean([r.metrics.get(main, np.nan) for r in results[(s, model, False)]]))
                 for s in names if (s, model, False) in results}
        prim = primary_pairs(names, primary, means) if mi == 0 else []
        pairs = list(prim) + [p for p in combinations(names, 2) if p not in prim and p[::-1] not in prim]
        for a, b in pairs:
            ra, rb = results.get((a, model, False)), results.get((b, model, False))
            if ra is None or rb is None:
                continue
            fa = {(r.repeat, r.fold): r for r in ra}
            fb = {(r.repeat, r.fold): r for r in rb}
            t, ma, mb, n = _paired(fa, fb, main, method, folds)
            row = {"task": task, "model": model, "metric": main, "test": f"corrected_t_{t.method}",
                   "role": "primary" if (a, b) in prim else "exploratory", "set_a": a, "set_b": b, "estimate_a": ma,
                   "estimate_b": mb, "diff": t.mean, "ci_low": t.ci_low, "ci_high": t.ci_high, "stat": t.stat,
                   "p_raw": t.p_value, "n": n, "n_undefined": t.n_undefined}
            if t.degenerate:  # identical differences in every fold: no t statistic; bootstrap the pooled predictions
                sa, sb = oof(ra), oof(rb)
                ok = np.isfinite(sa) & np.isfinite(sb)
                arrays, units = pooled_arrays(sa, sb, ok)
                bd = inference.bootstrap_difference(pooled_stat, arrays, units, n_boot, rng)
                row.update(test="patient_bootstrap", diff=bd.estimate, ci_low=bd.ci_low, ci_high=bd.ci_high, stat=np.nan,
                           p_raw=bd.p_value)  # diff: the pooled out-of-fold difference the interval is about
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df["p_holm"] = np.nan
    df["p_bh"] = np.nan
    for _, idx in df.groupby("role").groups.items():
        df.loc[idx, "p_holm"] = multiplicity.holm(df.loc[idx, "p_raw"].to_numpy())
        df.loc[idx, "p_bh"] = multiplicity.benjamini_hochberg(df.loc[idx, "p_raw"].to_numpy())
    prim_col = "p_holm" if adjust == "holm" else "p_bh"
    df["p_adjusted"] = np.where(df["role"] == "primary", df[prim_col], df["p_bh"])
    df["significant"] = df["p_adjusted"] < 0.05
    return df[COLUMNS]


def primary_summary(df: pd.DataFrame, adjust: str) -> dict:
    """summary.json's ``primary`` block of one task: the declared family and one sentence."""
    p = df[df["role"] == "primary"] if len(df) else df
    pairs = [{k: r[k] for k in ("model", "set_a", "set_b", "estimate_a", "estimate_b", "diff", "ci_low", "ci_high", "p_raw",
                                "p_adjusted", "test", "significant", "n", "n_undefined")} for _, r in p.iterrows()]
    return {"family_size": len(pairs), "adjust": adjust, "pairs": pairs, "sentence": sentence(pairs, df["metric"].iloc[0] if len(df) else "")}


def _p(p) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "< 0.0001" if p <= inference.P_FLOOR else f"= {p:.3g}"


def sentence(pairs: list[dict], metric: str) -> str:
    """'Primary comparison (AUC): learned 0.712 vs handcrafted 0.650, difference +0.062 [95% CI ...], adjusted p = ...'."""
    if not pairs:
        return "No primary comparison: the sets named by benchmark.primary are not both in this run."
    label = {"auc": "AUC", "harrell_c": "Harrell's C"}.get(metric, metric)
    bits = []
    for r in pairs:
        bits.append(f"{r['set_a']} {r['estimate_a']:.3f} vs {r['set_b']} {r['estimate_b']:.3f}, difference {r['diff']:+.3f} "
                    f"[95% CI {r['ci_low']:+.3f}, {r['ci_high']:+.3f}], adjusted p {_p(r['p_adjusted'])}"
                    f" ({'significant' if r['significant'] else 'not significant'})")
    return f"Primary comparison ({label}, family of {len(pairs)}): " + "; ".join(bits) + "."
