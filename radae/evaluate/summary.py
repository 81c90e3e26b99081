"""``benchmark/summary.json``: the headline numbers the report reads.

Stable keys (NaN written as null)::

    schema_version: 1
    headline: one sentence
    cohort: "all" | "evaluation_patients";  unit: "lesion" | "patient";  n_rows, n_patients
    feature_sets: {name: {n_features, preprocessing: "standard" | "voxel_pca"}}
    cv: {folds, repeats, inner_folds, seed, selection, max_features, correlation_threshold,
         bootstrap, adjust, models, survival_models, robust_only}
    classification: null | {
        label, n_rows, n_patients, n_positive, n_negative,
        results: {set: {model: {
            auc: {mean, sd, ci_low, ci_high, n_folds, n_undefined, ci_method: "calibrated_t" | "nadeau_bengio_t", degenerate},
            auc_pooled: {estimate, ci_low, ci_high, n_boot, ci_method: "patient_bootstrap_percentile"},
            balanced_accuracy|brier|calibration_slope|calibration_intercept: {mean, sd, ci_low, ci_high, ...}}}},
        shuffled_control: {set: {model: {auc: {mean, sd, ci_low, ci_high, ...}}}},
        best: {feature_set, model, auc_mean}}
    survival: null | {
        time, event, n_rows, n_patients, n_events, horizons: [...], ibs_window: [lo, hi],
        results: {set: {model: {harrell_c|uno_c|td_auc_mean|td_auc@<h>|ibs: {mean, sd, ci_low, ci_high, ...},
                               harrell_c_pooled: {estimate, ci_low, ci_high, ...}, logrank_p}}},
        shuffled_control: {set: {model: {harrell_c: {...}}}},
        best: {feature_set, model, harrell_c_mean}}
    classification|survival.primary: {family_size, adjust, declared, pairs: [...], sentence,
        permutation: {status, n_permutations, sets: {set: {observed, null_mean, p_value}}, difference}}
    comparisons: {n, n_significant, n_primary, n_primary_significant, adjust, exploratory_adjust, test}
    robustness: {status: "done" | "skipped", reason, icc, n_lesions, perturbations,
                 sets: {set: {n_features, n_undefined, median_icc, fraction_icc_ge_0_75, fraction_icc_ge_0_90}}}
    label_efficiency: {status, reason, fractions, repeats, cv_repeats, classification|survival: {metric,
                       sets: {set: {model: [{fraction, n_train_patients, mean, ci_low, ci_high, n_values}]}}}}
    redundancy: {status, n_latent, n_handcrafted, median_max_abs_rho, fraction_latent_max_abs_rho_ge_0_8,
                 volume_max_abs_rho, fraction_latent_volume_abs_rho_ge_0_5, top: [{latent, feature, rho}]}
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from radae.config import BenchmarkConfig
from radae.evaluate import inference
from radae.evaluate.cohort import Cohort

SCHEMA_VERSION = 1


def header(cohort: Cohort, bcfg: BenchmarkConfig) -> dict:
    """The cohort, feature-set and CV keys, with ``classification``/``survival`` still None."""
    groups_all = cohort.rows["patient_id"].to_numpy()
    return {
        "schema_version": SCHEMA_VERSION,
        "cohort": cohort.cohort,
        "unit": cohort.unit,
        "n_rows": int(len(cohort.rows)),
        "n_patients": int(pd.unique(groups_all).size),
        "feature_sets": {n: {"n_features": int(fs.X.shape[1]), "preprocessing": fs.preprocessing} for n, fs in cohort.sets.items()},
        "cv": {"folds": bcfg.cv.folds, "repeats": bcfg.cv.repeats, "inner_folds": bcfg.cv.inner_folds, "seed": bcfg.cv.seed,
               "selection": bcfg.selection, "max_features": bcfg.max_features, "correlation_threshold": bcfg.correlation_threshold,
               "bootstrap": bcfg.bootstrap, "adjust": bcfg.adjust, "models": list(bcfg.models), "survival_models": list(bcfg.survival_models),
               "robust_only": bcfg.robustness.robust_only, "primary": list(bcfg.primary), "permutations": bcfg.permutations,
               "interval": inference.resolve_method(bcfg.interval, int(pd.unique(groups_all).size)), "interval_setting": bcfg.interval},
        "classification": None,
        "survival": None,
    }


def comparisons_block(comp_table: pd.DataFrame, bcfg: BenchmarkConfig, n_patients: int) -> dict:
    """summary.json's ``comparisons``: how many paired tests (one per pair), how many significant."""
    sig = comp_table["significant"].fillna(False).astype(bool) if len(comp_table) else pd.Series(dtype=bool)
    prim = (comp_table["role"] == "primary") if len(comp_table) else pd.Series(dtype=bool)
    return {"n": int(len(comp_table)), "n_significant": int(sig.sum()),  # one test per pair
            "n_primary": int(prim.sum()), "n_primary_significant": int((sig & prim).sum()),
            "adjust": bcfg.adjust, "exploratory_adjust": "bh",
            "test": f"corrected_t_{inference.resolve_method(bcfg.interval, n_patients)}"}


def headline(summary: dict) -> str:
    """One sentence per task: the first model's mean metric with its CI per set, the control, the primary result."""
    parts = []
    for task, main in (("classification", "auc"), ("survival", "harrell_c")):
        s = summary.get(task)
        if not s or not s.get("results"):
            continue
        bits = []
        for name, per_model in s["results"].items():
            model, entry = next(iter(per_model.items()))
            m = entry[main]
            bits.append(f"{name} {m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]")
        ctrl = [v[main]["mean"] for per in s.get("shuffled_control", {}).values() for v in per.values()]
        ctrl_s = f"; shuffled-label control {np.nanmean(ctrl):.3f}" if ctrl else ""
        label = s.get("label") or f"{s.get('time')}/{s.get('event')}"
        prim = (s.get("primary") or {}).get("sentence")
        parts.append(f"{task} ({label}) mean {main.replace('_', ' ')} with 95% CI: " + ", ".join(bits) + ctrl_s
                     + (f". {prim.rstrip('.')}" if prim else ""))
    return ". ".join(parts) + ("." if parts else "")
