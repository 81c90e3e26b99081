"""benchmark: leakage-free comparison of learned vs handcrafted features (and baselines) for the endpoints.

Reads ``ingest/cases.parquet`` (outcomes, clinical columns), ``extract/latent.parquet`` and
``extract/radiomics.parquet`` (features, keyed by ``case_id``/``patient_id``) and
``preprocess/rois.parquet`` (lesion volume, ROI files for voxel PCA). Every feature set is evaluated on
the *same* rows and the *same* folds so comparisons are paired. Rows are lesions grouped by patient
(``extract.aggregate: all``) or one per patient (``largest`` / ``volume_weighted_mean``). If the
manifest marks evaluation patients (``is_evaluation``), only they are benchmarked (the encoder never
saw them); otherwise all patients are.

Feature sets: ``learned`` (latent_###), ``handcrafted`` (PyRadiomics-named columns; ``diagnostics_*``
left out), ``combined``, ``volume`` (log lesion volume), ``voxel_pca``, ``clinical``; with ``clinical``
also ``clinical+<set>`` for every other set but voxel_pca (clinical columns forced into the model).

Refuses (BenchmarkError, one line) what cannot be done honestly: no task configured, a label that is
not binary or has one class, fewer patients per class (or with events) than folds, fewer than
``MIN_EVENTS`` (10) events or fewer than 2 per fold, feature tables whose keys do not match the cases,
a requested feature set whose table is missing.

Outputs in ``<run>/benchmark/`` (all written atomically):

- ``cv_results.parquet`` - long: task, feature_set, model, control (bool: shuffled-label run), repeat,
  fold (-1 = pooled out-of-fold predictions of that repeat), metric, value, n_train, n_test,
  n_features, best_params (JSON). Classification metrics: auc, balanced_accuracy (threshold = training
  prevalence), brier, calibration_slope, calibration_intercept. Survival: harrell_c, uno_c,
  td_auc@<h> per horizon, td_auc_mean (KM-weighted as scikit-survival), ibs (one window for every fold; NaN where
  a fold's follow-up ends first), horizons / window from config or the training folds' event times; pooled rows: the classification metrics (AUC of the
  fold-standardised linear predictor, the others of the probabilities), or harrell_c of the
  fold-standardised risk and logrank_p of the training-median risk groups.
- ``predictions.parquet`` - out-of-fold predictions per repeat: task, feature_set, model, control,
  repeat, fold, case_id, patient_id, label, time, event, score (P(y=1) or risk), score_std (the linear
  predictor - logit P or risk - standardised by its distribution on the training fold, so rankings pool
  across folds), risk_group (high/low at the training-fold median; survival).
- ``comparisons.csv`` - ONE paired test per pair of feature sets per task and model (:mod:`radae.evaluate.comparisons`):
  task, model, metric, test (corrected_t_calibrated | corrected_t_nadeau_bengio | patient_bootstrap when every
  fold gave the same difference), role (primary | exploratory), set_a, set_b, estimate_a, estimate_b, diff (a - b),
  ci_low, ci_high (95% of diff), stat, p_raw (floored at 1e-4), p_holm, p_bh (within the role's family),
  p_adjusted (primary: ``benchmark.adjust``; exploratory: BH), significant (p_adjusted < 0.05), n, n_undefined.
  DeLong is not used inside CV (anti-conservative on averaged out-of-fold scores; ``benchmarks/bench_type1.py``).
- ``km.parquet`` - Kaplan-Meier curves of the risk groups (repeat 0): feature_set, model, group,
  time, survival, ci_lower, ci_upper, at_risk.
- ``robustness.parquet`` - feature_set, feature, icc, icc_ci_low, icc_ci_high (95%, F-based), n_lesions, n_conditions, icc_kind;
  ``robustness_values.parquet`` - the raw study values (case_id, condition, feature_set, feature, value).
  ``robustness_inputs.parquet`` - condition, feature_set, n_lesions, n_changed, fraction_changed (lesions whose
  extractor input differs from the unperturbed one); ``robustness_families.parquet`` - feature_set, family,
  n_features, median_icc, ci_low, ci_high (lesion bootstrap), fraction_icc_ge_0_75/0_90, n_lesions.
- ``redundancy.parquet`` - latent, feature, rho (Spearman), abs_rho, is_volume.
- ``label_efficiency.parquet`` (when ``benchmark.label_fractions`` is set) - task, set, model, fraction,
  n_train_patients, n_train, n_test, cv_repeat, fold, repeat (subsample draw), metric, value: every set x model
  refitted on stratified patient subsamples of each outer training fold, scored on the same test fold
  (:mod:`radae.evaluate.label_efficiency`).
- ``summary.json`` - headline numbers, read by the report. Stable keys (NaN written as null)::

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

import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from radae.config import BenchmarkConfig, PipelineConfig
from radae.util.csvsafe import to_csv_text
from radae.util.progress import StepLog
from radae.util.errors import BenchmarkError, RadaeError, case_message
from radae.evaluate import (baselines, comparisons, cv, external, harmonise, inference, label_efficiency, permutation, pooled,
                            redundancy, robustness, stats, survival_window)
from radae.evaluate.survival import km_curves, survival_y
from radae.util.fsutil import atomic_path, atomic_write_text
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MIN_EVENTS = 10  # fewer events than this: no survival model can be evaluated honestly
MIN_EVENTS_PER_FOLD = 2  # events needed per outer test fold on average
LATENT_RE = re.compile(r"^latent_\d+$")
# feature sets read from latent.parquet besides ``learned``: set -> column pattern (radae.features.heads)
HEAD_SETS = {"learned_pooled": re.compile(r"^pooled_l\d+_(avg|max|mask)_\d+$"), "anomaly": re.compile(r"^anomaly_\w+$"),
             "random_encoder": re.compile(r"^random_latent_\d+$"),
             "random_pooled": re.compile(r"^random_pooled_l\d+_(avg|max|mask)_\d+$")}
# PyRadiomics naming: <image type>_<feature class>_<feature>, e.g. original_glcm_Contrast, wavelet-LLH_firstorder_Mean
RADIOMICS_RE = re.compile(r"^[A-Za-z0-9.\-]+_(shape|shape2D|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_[A-Za-z0-9]+$")
ROBUSTNESS_SETS = ("learned", "handcrafted")
COMPARISON_COLUMNS = comparisons.COLUMNS
BOUNDED_METRICS = {"auc", "balanced_accuracy", "brier", "harrell_c", "uno_c", "ibs"}  # t-intervals clipped to [0, 1]
KM_COLUMNS = ["feature_set", "model", "group", "time", "survival", "ci_lower", "ci_upper", "at_risk"]

OnFailure = Callable[[str | None, str, str | None], None]


# ----------------------------------------------------------------------------- inputs
@dataclass
class FeatureSet:
    name: str
    columns: list[str]
    X: np.ndarray  # (rows, columns), float, NaN = missing
    forced: np.ndarray  # bool per column: bypasses filtering/selection (clinical covariates)
    preprocessing: str = "standard"  # or "voxel_pca"
    column_study: list[str | None] = field(default_factory=list)  # per column: its robustness-study set ("learned"/"handcrafted") or None


@dataclass
class Cohort:
    """The analysis rows (one per lesion or per patient) and every feature set on exactly these rows."""

    rows: pd.DataFrame  # case_id, patient_id, outcome/clinical columns
    sets: dict[str, FeatureSet]
    unit: str  # "lesion" | "patient"
    cohort: str  # "all" | "evaluation_patients"
    lesions: pd.DataFrame  # lesion-level: case_id, patient_id, analysis row index ("row")
    batch: np.ndarray | None = None  # per row, the ComBat batch code (benchmark.harmonise), else None
    batch_labels: list[str] | None = None


def _read_table(path: Path, what: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise BenchmarkError(f"file {path}: {what} not found -> run the upstream stage first") from None
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"file {path}: cannot read {what} ({e}) -> rerun the upstream stage") from None
    for key in ("case_id", "patient_id"):
        if key not in df.columns:
            raise BenchmarkError(f"file {path}: column {key} is missing -> the table does not follow the run-folder contract")
    df = df.copy()
    df["case_id"] = df["case_id"].astype(str)
    df["patient_id"] = df["patient_id"].astype(str)
    dup = df["case_id"][df["case_id"].duplicated()]
    if len(dup):
        raise BenchmarkError(f"file {path}: case_id {dup.iloc[0]!r} appears {int((df['case_id'] == dup.iloc[0]).sum())} times -> one row per lesion expected")
    return df


def check_keys(table: pd.DataFrame, cases: pd.DataFrame, name: str) -> None:
    """Every case_id of a feature table must be a case, with the same patient_id."""
    known = cases.set_index("case_id")["patient_id"]
    unknown = table.loc[~table["case_id"].isin(known.index), "case_id"]
    if len(unknown):
        raise BenchmarkError(
            f"{name}: {len(unknown)} case_id(s) not in ingest/cases.parquet (first: {unknown.iloc[0]!r}) "
            "-> the table comes from another run or manifest; rerun extract"
        )
    pat = known.reindex(table["case_id"]).to_numpy()
    bad = pat != table["patient_id"].to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchmarkError(
            case_message(table["case_id"].iloc[i], name, f"patient_id {table['patient_id'].iloc[i]!r} but cases.parquet says {pat[i]!r}", "rerun extract")
        )


def _numeric(frame: pd.DataFrame, columns: list[str], name: str) -> np.ndarray:
    out = np.empty((len(frame), len(columns)))
    for j, c in enumerate(columns):
        col = pd.to_numeric(frame[c], errors="coerce")
        if col.isna().sum() > frame[c].isna().sum():
            raise BenchmarkError(f"{name}: column {c} holds non-numeric values -> fix the feature table")
        out[:, j] = col.to_numpy(dtype=float)
    inf = ~np.isfinite(out) & ~np.isnan(out)
    if inf.any():
        logger.warning("%s: %d infinite values treated as missing", name, int(inf.sum()))
        out[inf] = np.nan
    return out


def _as_bool(col: pd.Series) -> np.ndarray:
    """True/False from bools, 0/1 or text like "true"/"yes"; missing -> False."""
    if col.dtype == bool:
        return col.to_numpy()
    text = col.astype("string").str.strip().str.lower()
    return text.isin(["true", "1", "1.0", "yes", "y", "t"]).fillna(False).to_numpy(dtype=bool)


def _needed_tables(sets: tuple[str, ...]) -> set[str]:
    need = set()
    for s in sets:
        if s in ("learned", "combined") or s in HEAD_SETS:
            need.add("latent")
        if s in ("handcrafted", "combined"):
            need.add("radiomics")
    return need


def load_cohort(run_dir: Path, cfg: PipelineConfig, on_failure: OnFailure | None = None) -> Cohort:
    """Read the run folder's tables, check keys, align rows, aggregate per patient if configured."""
    bcfg = cfg.benchmark
    fail = on_failure or (lambda c, m, f: logger.warning("case %s: %s", c, m))
    cases = _read_table(run_dir / "ingest" / "cases.parquet", "cases table")
    rois_path = run_dir / "preprocess" / "rois.parquet"
    rois = _read_table(rois_path, "ROI index")
    check_keys(rois, cases, "preprocess/rois.parquet")
    tables: dict[str, pd.DataFrame] = {}
    for key in sorted(_needed_tables(bcfg.feature_sets)):
        path = run_dir / "extract" / f"{key}.parquet"
        if not path.exists():
            want = [s for s in bcfg.feature_sets if key in _needed_tables((s,))]
            raise BenchmarkError(
                f"file {path}: not found, but benchmark.feature_sets asks for {want} -> enable extract.{'latent' if key == 'latent' else 'radiomics'} "
                "or remove those sets"
            )
        tables[key] = _read_table(path, f"{key} feature table")
        check_keys(tables[key], cases, f"extract/{key}.parquet")

    # keep the evaluation patients only, if the manifest designates any
    cohort = "all"
    if bcfg.external is None and "is_evaluation" in cases.columns and _as_bool(cases["is_evaluation"]).any():
        cases = cases[_as_bool(cases["is_evaluation"])]
        cohort = "evaluation_patients"

    # paired rows: a lesion enters only if every needed table has it
    present = set(cases["case_id"])
    sources = {"preprocess/rois.parquet": rois, **{f"extract/{k}.parquet": t for k, t in tables.items()}}
    for name, t in sources.items():  # each missing lesion is reported once, for the first table that lacks it
        missing = sorted(present - set(t["case_id"]))
        for cid in missing:
            fail(cid, f"not in {name} (failed upstream, see that stage's failures.csv); left out of every feature set so comparisons stay paired", name)
        present -= set(missing)
    if not present:
        raise BenchmarkError("no lesion is present in every feature table -> check extract/failures.csv")
    lesions = cases[cases["case_id"].isin(present)].sort_values(["patient_id", "case_id"]).reset_index(drop=True)
    ids = lesions["case_id"]

    frames: dict[str, pd.DataFrame] = {}
    for table, fset, pattern, what in (("latent", "learned", LATENT_RE, "latent_### columns"),
                                       ("radiomics", "handcrafted", RADIOMICS_RE,
                                        "PyRadiomics feature columns (like original_shape_MeshVolume)")):
        if table not in tables:
            continue
        t = tables[table].set_index("case_id").loc[ids]
        cols = [c for c in t.columns if pattern.match(str(c))]
        if not cols:
            raise BenchmarkError(f"extract/{table}.parquet: no {what} -> rerun extract")
        frames[fset] = t[cols].reset_index(drop=True)
        if table == "latent":
            for head, hpat in HEAD_SETS.items():
                if head in bcfg.feature_sets:
                    hcols = [c for c in t.columns if hpat.match(str(c))]
                    if not hcols:
                        raise BenchmarkError(f"extract/latent.parquet: no columns for feature set {head} -> add its head to "
                                             "extract.latent.heads and rerun extract")
                    frames[head] = t[hcols].reset_index(drop=True)
    r = rois.set_index("case_id").loc[ids].reset_index()
    vol = baselines.volume_features(r).drop(columns="case_id")
    frames["volume"] = vol
    if "voxel_pca" in bcfg.feature_sets:
        frames["voxel_pca"] = baselines.voxel_features(r, run_dir, bcfg.voxel_grid_vox).drop(columns="case_id")
    if bcfg.clinical:
        frames["clinical"] = baselines.clinical_features(lesions, bcfg.clinical).drop(columns="case_id")

    # aggregate lesions per patient when configured
    how = cfg.extract.aggregate
    lesions = lesions.copy()
    if how == "all" or not lesions["patient_id"].duplicated().any():
        unit = "lesion" if lesions["patient_id"].duplicated().any() else "patient"
        rows = lesions.reset_index(drop=True)
        lesions["row"] = np.arange(len(lesions))
    else:
        unit = "patient"
        volume = np.exp(vol[baselines.VOLUME_COLUMN].to_numpy())
        rows, frames, lesions = _aggregate(lesions, frames, volume, how, bcfg)
    sets = _build_sets(frames, bcfg)
    batch, labels = harmonise.batch_codes(rows[bcfg.harmonise.batch], bcfg.harmonise.batch) if bcfg.harmonise else (None, None)
    return Cohort(rows=rows, sets=sets, unit=unit, cohort=cohort, lesions=lesions[["case_id", "patient_id", "row"]],
                  batch=batch, batch_labels=labels)


def _aggregate(lesions: pd.DataFrame, frames: dict[str, pd.DataFrame], volume: np.ndarray, how: str, bcfg: BenchmarkConfig):
    """One row per patient: the largest lesion, or the volume-weighted mean of each feature.

    Outcome and clinical columns must agree across a patient's lesions. Voxel-PCA and clinical
    features always come from the largest lesion (a mean of voxels or of categories means nothing).
    """
    outcome_cols = [c for c in _outcome_columns(bcfg) if c in lesions.columns] + list(bcfg.clinical)
    for c in outcome_cols:
        varying = lesions.groupby("patient_id")[c].nunique(dropna=False)
        if (varying > 1).any():
            pid = varying.index[varying > 1][0]
            raise BenchmarkError(f"patient {pid}: column {c!r} differs between its lesions, so lesions cannot be aggregated per patient -> use extract.aggregate: all")
    lesions = lesions.assign(_vol=volume, _i=np.arange(len(lesions)))
    largest = lesions.sort_values(["patient_id", "_vol", "case_id"], ascending=[True, False, True]).drop_duplicates("patient_id")
    largest = largest.sort_values("patient_id")
    patient_order = largest["patient_id"].to_numpy()
    row_of_patient = {p: i for i, p in enumerate(patient_order)}
    out = {}
    for name, f in frames.items():
        if how == "largest" or name in ("voxel_pca", "clinical"):
            out[name] = f.iloc[largest["_i"].to_numpy()].reset_index(drop=True)
        else:
            w = lesions["_vol"].to_numpy()
            vals = f.to_numpy(dtype=float)
            ok = np.isfinite(vals)
            g = lesions["patient_id"].map(row_of_patient).to_numpy()
            num = np.zeros((len(patient_order), vals.shape[1]))
            den = np.zeros_like(num)
            np.add.at(num, g, np.where(ok, vals, 0.0) * w[:, None])
            np.add.at(den, g, ok * w[:, None])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = pd.DataFrame(np.where(den > 0, num / den, np.nan), columns=f.columns)
    rows = largest.drop(columns=["_vol", "_i"]).reset_index(drop=True)
    lesions = lesions.drop(columns=["_vol", "_i"])
    lesions["row"] = lesions["patient_id"].map(row_of_patient).to_numpy()
    return rows, out, lesions


def _outcome_columns(bcfg: BenchmarkConfig) -> list[str]:
    cols = []
    if bcfg.classification:
        cols.append(bcfg.classification.label)
    if bcfg.survival:
        cols += [bcfg.survival.time, bcfg.survival.event]
    return cols


def _build_sets(frames: dict[str, pd.DataFrame], bcfg: BenchmarkConfig) -> dict[str, FeatureSet]:
    def make(name, parts: list[str], preprocessing="standard") -> FeatureSet:
        cols, mats, forced, study = [], [], [], []
        for part in parts:
            f = frames[part]
            cols += list(f.columns)
            mats.append(_numeric(f, list(f.columns), f"feature set {name}"))
            forced += [part == "clinical"] * f.shape[1]
            study += [part if part in ROBUSTNESS_SETS else None] * f.shape[1]
        X = np.hstack(mats) if mats else np.zeros((0, 0))
        return FeatureSet(name, cols, X, np.asarray(forced, dtype=bool), preprocessing, study)

    parts = {
        "learned": ["learned"],
        "handcrafted": ["handcrafted"],
        "combined": ["learned", "handcrafted"],
        "volume": ["volume"],
        "voxel_pca": ["voxel_pca"],
        "clinical": ["clinical"],
        **{h: [h] for h in HEAD_SETS},
    }
    sets: dict[str, FeatureSet] = {}
    for name in bcfg.feature_sets:
        sets[name] = make(name, parts[name], "voxel_pca" if name == "voxel_pca" else "standard")
    if "clinical" in bcfg.feature_sets:
        for name in bcfg.feature_sets:
            if name not in ("clinical", "voxel_pca"):
                sets[f"clinical+{name}"] = make(f"clinical+{name}", ["clinical"] + parts[name])
    for fs in sets.values():
        allnan = np.isnan(fs.X).all(axis=0)
        if allnan.all():
            raise BenchmarkError(f"feature set {fs.name}: every column is missing for every row -> check the feature table")
    return sets


# ----------------------------------------------------------------------------- outcomes
def classification_outcome(rows: pd.DataFrame, label: str, on_failure: OnFailure) -> tuple[np.ndarray, np.ndarray]:
    """(row mask with a label, 0/1 labels of those rows). Raises BenchmarkError for non-binary labels."""
    if label not in rows.columns:
        raise BenchmarkError(f"benchmark.classification.label: column {label!r} not in ingest/cases.parquet (columns: {', '.join(map(str, rows.columns))})")
    raw = rows[label]
    if raw.dtype == bool:
        vals = raw.astype(float)
    else:
        vals = pd.to_numeric(raw, errors="coerce")
        bad = vals.isna() & raw.notna()
        if bad.any():
            raise BenchmarkError(f"label {label!r}: value {raw[bad].iloc[0]!r} is not 0/1 -> recode the manifest column as 0/1")
    has = vals.notna().to_numpy()
    for cid in rows.loc[~has, "case_id"]:
        on_failure(cid, f"label {label!r} is missing; left out of the classification task", None)
    y = vals[has].to_numpy()
    uniq = set(np.unique(y).tolist())
    if not uniq <= {0.0, 1.0}:
        raise BenchmarkError(f"label {label!r} has values {sorted(uniq)}; a binary 0/1 outcome is required")
    if len(uniq) < 2:
        raise BenchmarkError(f"label {label!r}: every labelled case is {int(next(iter(uniq)))}; a single class cannot be discriminated")
    return has, y.astype(int)


def survival_outcome(rows: pd.DataFrame, time_col: str, event_col: str, folds: int, on_failure: OnFailure) -> tuple[np.ndarray, np.ndarray]:
    """(row mask with time and event, structured outcome of those rows). Refuses too few events."""
    for c in (time_col, event_col):
        if c not in rows.columns:
            raise BenchmarkError(f"benchmark.survival: column {c!r} not in ingest/cases.parquet (columns: {', '.join(map(str, rows.columns))})")
    t = pd.to_numeric(rows[time_col], errors="coerce")
    e = pd.to_numeric(rows[event_col].astype(float) if rows[event_col].dtype == bool else rows[event_col], errors="coerce")
    for c, v in ((time_col, t), (event_col, e)):
        bad = v.isna() & rows[c].notna()
        if bad.any():
            raise BenchmarkError(f"survival column {c!r}: value {rows[c][bad].iloc[0]!r} is not numeric -> recode the manifest column")
    has = (t.notna() & e.notna()).to_numpy()
    for cid in rows.loc[~has, "case_id"]:
        on_failure(cid, "survival time or event missing; left out of the survival task", None)
    tv, ev = t[has].to_numpy(dtype=float), e[has].to_numpy(dtype=float)
    if (tv < 0).any():
        raise BenchmarkError(f"survival time {time_col!r}: {int((tv < 0).sum())} negative value(s) -> times are durations >= 0")
    if not set(np.unique(ev).tolist()) <= {0.0, 1.0}:
        raise BenchmarkError(f"survival event {event_col!r} has values {sorted(set(np.unique(ev).tolist()))}; 0 = censored, 1 = event expected")
    n_events = int(ev.sum())
    need = max(MIN_EVENTS, MIN_EVENTS_PER_FOLD * folds)
    if n_events < need:
        raise BenchmarkError(
            f"survival: only {n_events} events; at least {need} are needed for {folds}-fold CV "
            f"(>= {MIN_EVENTS} overall and {MIN_EVENTS_PER_FOLD} per fold) -> lower benchmark.cv.folds or drop the survival task"
        )
    return has, survival_y(tv, ev.astype(bool))


# ----------------------------------------------------------------------------- running a task
@dataclass
class TaskRun:
    """Everything one task produced, before it is turned into tables."""

    task: str
    folds: list[pd.DataFrame] = field(default_factory=list)
    predictions: list[pd.DataFrame] = field(default_factory=list)
    results: dict[tuple[str, str, bool], list[cv.FoldResult]] = field(default_factory=dict)
    km: list[pd.DataFrame] = field(default_factory=list)
    logrank: dict[tuple[str, str], float] = field(default_factory=dict)  # repeat 0, pooled risk groups


def _permute_outcome(y, groups: np.ndarray, rng: np.random.Generator):
    """Shuffle outcomes between patients (all lesions of a patient move together when their outcomes agree)."""
    n = len(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    first = np.array([np.flatnonzero(inv == g)[0] for g in range(len(uniq))])
    consistent = all(len({repr(y[i]) for i in np.flatnonzero(inv == g)}) == 1 for g in range(len(uniq)))
    if consistent:
        perm = rng.permutation(len(uniq))
        return y[first[perm][inv]]
    return y[rng.permutation(n)]


def _metric_summary(results: list[cv.FoldResult], metric: str, method: str = "nadeau_bengio", folds: int = 5) -> dict:
    """Fold-mean metric with the corrected-t interval of ``method``; undefined folds counted in ``n_undefined``."""
    vals = np.array([r.metrics.get(metric, np.nan) for r in results], dtype=float)
    n_train = float(np.mean([r.n_train for r in results]))
    n_test = float(np.mean([r.n_test for r in results]))
    t = inference.cv_ttest(vals, n_train, n_test, folds, method)
    ok = vals[np.isfinite(vals)]
    lo, hi = t.ci_low, t.ci_high
    if metric in BOUNDED_METRICS or metric.startswith("td_auc"):
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return {
        "mean": t.mean,
        "sd": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "n_folds": int(len(ok)),
        "n_undefined": t.n_undefined,
        "ci_method": f"{t.method}_t",
        "degenerate": t.degenerate,
    }


def run_task(
    task: str,
    cohort: Cohort,
    mask: np.ndarray,
    y,
    bcfg: BenchmarkConfig,
    seed: int,
    column_filters: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    survival_eval: cv.SurvivalEval | None = None,
) -> TaskRun:
    """Nested CV of every feature set x model on the rows in ``mask``, plus the shuffled-label control.

    The control runs the first model on every feature set with outcomes permuted between patients,
    a fresh permutation (and fresh folds) in each repeat, so its mean averages over permutations.
    """
    rows = cohort.rows[mask].reset_index(drop=True)
    groups = rows["patient_id"].to_numpy()
    case_ids = rows["case_id"].to_numpy()
    models = list(bcfg.models if task == "classification" else bcfg.survival_models)
    splits = cv.make_splits(cv.strata_of(y), groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed)
    out = TaskRun(task)
    controls: list[tuple[object, list[cv.FoldSplit]]] = []
    if bcfg.shuffled_control:
        rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, 7]))
        for r in range(bcfg.cv.repeats):
            y_perm = _permute_outcome(y, groups, rng)
            sp = cv.make_splits(cv.strata_of(y_perm), groups, bcfg.cv.folds, 1, bcfg.cv.seed + 1000 + r)
            controls.append((y_perm, [replace(s, repeat=r) for s in sp]))
    n_fits = len(cohort.sets) * len(models) * bcfg.cv.repeats + (len(cohort.sets) * len(controls))
    progress = StepLog(n_fits, f"benchmark {task}:", logger)  # set x model x repeat, controls included
    by_repeat = [(y, [s for s in splits if s.repeat == r]) for r in sorted({s.repeat for s in splits})]
    for name, fs in cohort.sets.items():
        X, forced = fs.X[mask], fs.forced
        filt = (column_filters or {}).get(name)
        if cohort.batch is not None:  # ComBat inside every fold: the batch code rides along as the last column
            X, forced, filt = harmonise.with_batch(X, forced, cohort.batch[mask], filt)
        for i, model in enumerate(models):
            spec = _spec(task, model, fs, bcfg, harmonise=cohort.batch is not None)
            runs = [(False, by_repeat)] + ([(True, controls)] if controls and i == 0 else [])
            for control, pieces in runs:
                keys = dict(task=task, feature_set=name, model=model, control=control)
                all_res: list[cv.FoldResult] = []
                for rep, (yy, sp) in enumerate(pieces):
                    progress.step(f"{name} / {model}{' (shuffled-label control)' if control else ''}, repeat "
                                  f"{rep + 1}/{len(pieces)}")
                    res = cv.cross_validate(X, yy, groups, sp, spec, seed=seed, forced=forced, survival_eval=survival_eval,
                                            column_filter=filt, n_jobs=bcfg.n_jobs)
                    all_res += res
                    out.predictions.append(cv.prediction_table(res, case_ids, groups, yy, **keys))
                    out.folds.append(_pooled_rows(task, res, yy, keys, None if control else out, groups))
                out.results[(name, model, control)] = all_res
                out.folds.append(cv.fold_table(all_res, **keys))
    return out


def _spec(task: str, model: str, fs: FeatureSet, bcfg: BenchmarkConfig, harmonise: bool = False) -> cv.PipelineSpec:
    """The per-set fold pipeline (ComBat first when the batch column rides along as the last feature column)."""
    return external.pipeline_spec(task, model, fs.preprocessing, bcfg, harmonise)


def task_inference(run: TaskRun, comps: pd.DataFrame, cohort: Cohort, mask: np.ndarray, y, bcfg: BenchmarkConfig, seed: int,
                   filters: Mapping | None = None, survival_eval: cv.SurvivalEval | None = None) -> dict:
    """summary.json's ``primary`` block of a task: the declared family, its sentence, the permutation test."""
    block = comparisons.primary_summary(comps, bcfg.adjust)
    block["declared"] = list(bcfg.primary)
    sets = list(dict.fromkeys(x for p in block["pairs"] for x in (p["set_a"], p["set_b"])))
    if not bcfg.permutations or not sets:
        block["permutation"] = {"status": "skipped", "reason": "benchmark.permutations is 0" if sets else "no primary pair"}
        return block
    model = block["pairs"][0]["model"]
    main = "auc" if run.task == "classification" else "harrell_c"
    groups = cohort.rows["patient_id"].to_numpy()[mask]

    def run_cv(name: str, y_perm, k: int) -> float:
        fs = cohort.sets[name]
        sp = cv.make_splits(cv.strata_of(y_perm), groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed + 5000 + k)
        res = cv.cross_validate(fs.X[mask], y_perm, groups, sp, _spec(run.task, model, fs, bcfg), seed=seed, forced=fs.forced,
                                survival_eval=survival_eval, column_filter=(filters or {}).get(name), n_jobs=bcfg.n_jobs)
        return float(np.nanmean([r.metrics.get(main, np.nan) for r in res]))

    observed = {n: float(np.nanmean([r.metrics.get(main, np.nan) for r in run.results[(n, model, False)]])) for n in sets}
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, 23]))
    logger.info("benchmark %s: permutation test, %d permutations of %s", run.task, bcfg.permutations, ", ".join(sets))
    block["permutation"] = {"status": "done", "model": model, "metric": main,
                            **permutation.permutation_test(observed, run_cv, sets, y, groups, bcfg.permutations, rng)}
    return block


def _pooled_rows(task: str, results: list[cv.FoldResult], y, keys: dict, out: TaskRun | None,
                 groups: np.ndarray | None = None) -> pd.DataFrame:
    """Metrics of the pooled out-of-fold predictions of each repeat (fold = -1); KM curves of repeat 0.

    Balanced accuracy thresholds each fold's probabilities at that fold's *training* prevalence. KM curves and
    the log-rank test count patients (a patient's lesions: one time, one group by majority of its lesions).
    """
    rows = []
    for rep in sorted({r.repeat for r in results}):
        rr = [r for r in results if r.repeat == rep]
        idx = np.concatenate([r.test_index for r in rr])
        n_train = int(np.mean([r.n_train for r in rr]))
        if task == "classification":
            prob = np.concatenate([r.score for r in rr])
            metrics = cv.classification_metrics(y[idx], prob, float(np.mean(y)))  # calibration needs the probabilities
            metrics["balanced_accuracy"] = pooled.balanced_accuracy_training_prevalence(y, rr)
            metrics["auc"] = stats.auc_score(y[idx], np.concatenate([r.score_std for r in rr]))
        else:
            score = np.concatenate([r.score_std for r in rr])
            group = np.concatenate([r.risk_group for r in rr]).astype(str)
            curves, p = km_curves(*pooled.patient_level(y["time"][idx], y["event"][idx], group,
                                                              None if groups is None else np.asarray(groups)[idx]))
            metrics = {"harrell_c": stats.harrell_c(y["time"][idx], y["event"][idx], score), "logrank_p": p}
            if out is not None and rep == 0:
                out.logrank[(keys["feature_set"], keys["model"])] = p
                if len(curves):
                    out.km.append(curves.assign(feature_set=keys["feature_set"], model=keys["model"]))
        for m, v in metrics.items():
            rows.append({**keys, "repeat": rep, "fold": -1, "metric": m, "value": float(v), "n_train": n_train,
                         "n_test": int(len(idx)), "n_features": int(np.mean([r.n_features for r in rr])), "best_params": ""})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- statistics across sets
def summarise_task(run: TaskRun, y, groups: np.ndarray, bcfg: BenchmarkConfig, seed: int) -> dict:
    """Per set x model: fold-mean metrics with corrected-t CIs, pooled metric with patient-bootstrap CI."""
    n = len(groups)
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, 11]))
    method = inference.resolve_method(bcfg.interval, int(pd.unique(groups).size))
    folds = bcfg.cv.folds
    results: dict = {}
    control: dict = {}
    if run.task == "classification":
        metrics = ["auc", "balanced_accuracy", "brier", "calibration_slope", "calibration_intercept"]
        main = "auc"
    else:
        first = next(iter(run.results.values()))
        metrics = ["harrell_c", "uno_c", "td_auc_mean", "ibs"] + sorted(k for k in first[0].metrics if k.startswith("td_auc@"))
        main = "harrell_c"
    for (name, model, is_control), res in run.results.items():
        if is_control:
            control.setdefault(name, {})[model] = {main: _metric_summary(res, main, method, folds)}
            continue
        entry = {m: _metric_summary(res, m, method, folds) for m in metrics}
        oof = cv.mean_oof_scores(res, n, standardised=True)
        ok = np.isfinite(oof)
        if run.task == "classification":
            stat = stats.auc_score
            arrays = (y[ok], oof[ok])
        else:
            def stat(t, e, s):
                return stats.harrell_c(t, e, s)
            arrays = (y["time"][ok], y["event"][ok], oof[ok])
        b = stats.bootstrap_ci(stat, arrays, groups[ok], bcfg.bootstrap, rng)
        entry[f"{main}_pooled"] = {"estimate": b.estimate, "ci_low": b.ci_low, "ci_high": b.ci_high, "n_boot": b.n_valid,
                                   "ci_method": "patient_bootstrap_percentile",
                                   "scores": "mean over repeats of the out-of-fold linear predictor standardised by its training fold"}
        if entry[main].get("degenerate"):  # every fold gave the same value: a zero-width t interval would be false precision
            entry[main].update(ci_low=b.ci_low, ci_high=b.ci_high, ci_method="patient_bootstrap_percentile (fold values identical)")
        if run.task == "survival":
            entry["logrank_p"] = run.logrank.get((name, model), float("nan"))
        results.setdefault(name, {})[model] = entry
    best = None
    for name, per_model in results.items():
        for model, entry in per_model.items():
            m = entry[main]["mean"]
            if np.isfinite(m) and (best is None or m > best[2]):
                best = (name, model, m)
    return {
        "results": results,
        "shuffled_control": control,
        "best": None if best is None else {"feature_set": best[0], "model": best[1], f"{main}_mean": best[2]},
    }


def compare_sets(run: TaskRun, y, n_rows: int, bcfg: BenchmarkConfig, groups: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """Pairwise tests of feature sets on the same folds, per model: one corrected t-test per pair, a primary
    family (``benchmark.primary``) adjusted alone and exploratory pairs (BH); see :mod:`radae.evaluate.comparisons`."""
    main = "auc" if run.task == "classification" else "harrell_c"
    groups = np.arange(n_rows) if groups is None else groups
    method = inference.resolve_method(bcfg.interval, int(pd.unique(groups).size))
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, 17]))
    if run.task == "classification":
        def stat(yy, sa, sb):
            return stats.auc_score(yy, sa) - stats.auc_score(yy, sb)

        def pooled_arrays(sa, sb, ok):
            return y[ok], sa[ok], sb[ok]
    else:
        def stat(t, e, sa, sb):
            return stats.harrell_c(t, e, sa) - stats.harrell_c(t, e, sb)

        def pooled_arrays(sa, sb, ok):
            return y["time"][ok], y["event"][ok], sa[ok], sb[ok]

    def oof(res):
        return cv.mean_oof_scores(res, n_rows, standardised=True)

    df = comparisons.compare(run.task, run.results, main, method, bcfg.cv.folds, bcfg.primary, bcfg.adjust, oof, stat,
                             pooled_arrays, groups, bcfg.bootstrap, rng)
    return df


# ----------------------------------------------------------------------------- robustness
def _text(v) -> str:
    """Manifest cell as text; missing (None/NaN) -> ""."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


LesionExtractor = Callable[[dict], Mapping[str, Mapping[str, float]]]


def find_extractors(cfg: PipelineConfig, run_dir: Path) -> tuple[LesionExtractor | None, str]:
    """The real extractors as ``fn(roi_index_row) -> {"learned": {...}, "handcrafted": {...}}``.

    Returns (None, reason) when they are not available (not installed yet, or disabled in the config),
    so robustness is reported as skipped rather than faked.
    """
    try:
        from radae.features import handcrafted as hc_mod  # noqa: F401
        from radae.features import latent as lat_mod  # noqa: F401
    except ImportError as e:
        return None, f"feature extractors not importable ({e})"
    fn = getattr(lat_mod, "robustness_extractor", None) or getattr(hc_mod, "robustness_extractor", None)
    if fn is None:
        return None, "radae.features does not expose robustness_extractor(cfg, run_dir) yet"
    return fn(cfg, run_dir), ""


def perturbed_lesion_features(
    case_row: dict,
    pert: robustness.Perturbation | None,
    cfg: PipelineConfig,
    extractor: LesionExtractor,
    seed: int,
    work_dir: Path,
) -> Mapping[str, Mapping[str, float]]:
    """Perturb one lesion's original scan and run it through the whole shared path and the extractors.

    The original image and mask are read as preprocess reads them, the perturbation is applied on the
    original grid, the result is written as NIfTI into ``work_dir`` and handed to
    ``preprocess_lesion`` (with a private cache, so nothing is reused from the real one), and the
    resulting ROI index row goes to ``extractor``. ``pert=None`` runs the unperturbed scan the same way.
    """
    import SimpleITK as sitk

    from radae.io import read_image, read_mask
    from radae.io.volume import Volume
    from radae.preprocess.lesion import preprocess_lesion

    row = dict(case_row)
    case = str(row["case_id"])
    image = read_image(row["image"], series_uid=_text(row.get("series_uid")) or None, case_id=case)
    mask = read_mask(row["mask"], _text(row.get("mask_label")) or None, image, image_path=row["image"], case_id=case)
    img, msk, spacing = image.array.astype(np.float32), (mask.array > 0).astype(np.uint8), image.spacing_mm
    if pert is not None:
        img, msk, spacing = robustness.apply_perturbation(pert, img, msk, spacing, str(row.get("modality", "")))
    name = "original" if pert is None else pert.kind
    folder = work_dir / case / name
    folder.mkdir(parents=True, exist_ok=True)
    vol_img = Volume(img, tuple(spacing), image.origin_mm, image.direction)
    vol_msk = Volume(msk, tuple(spacing), image.origin_mm, image.direction)
    sitk.WriteImage(vol_img.to_sitk(), str(folder / "image.nii"))
    sitk.WriteImage(vol_msk.to_sitk(), str(folder / "mask.nii"))
    row.update(image=str(folder / "image.nii"), mask=str(folder / "mask.nii"), mask_label=None, series_uid=None,
               image_sha256=f"perturbed-{name}", mask_sha256=f"perturbed-{name}")
    try:
        meta = preprocess_lesion(row, cfg.preprocess, folder / "cache", seed)
        return {**extractor(meta), robustness.INPUTS_KEY: robustness.input_digests(meta, cfg.preprocess.mask_channel)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # scans can be large; keep one condition on disk at a time


def run_robustness(
    cases: pd.DataFrame,
    cfg: PipelineConfig,
    extractor: LesionExtractor,
    seed: int,
    on_failure: OnFailure,
    inputs: list[dict] | None = None,
) -> pd.DataFrame:
    """The perturbation study on up to ``max_lesions`` lesions (a seeded random subset, masks required).

    ``inputs`` collects per lesion and condition the digest of each set's extractor input (see
    :func:`radae.evaluate.robustness.input_changes`)."""
    rcfg = cfg.benchmark.robustness
    cand = cases[cases["mask"].astype(str).str.len() > 0].sort_values("case_id")
    ids = cand["case_id"].astype(str).to_numpy()
    if len(ids) > rcfg.max_lesions:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
        ids = np.sort(rng.choice(ids, size=rcfg.max_lesions, replace=False))
    by_id = {str(r["case_id"]): r for r in cand.to_dict("records")}
    settings = robustness.PerturbationSettings(rcfg.noise_scale, rcfg.resample_factor, rcfg.rotation_deg, rcfg.translation_vox)
    with tempfile.TemporaryDirectory(prefix="radae-robustness-") as tmp:
        def extract(cid: str, pert):
            return perturbed_lesion_features(by_id[cid], pert, cfg, extractor, seed, Path(tmp))

        return robustness.perturbation_study(
            list(ids), rcfg.perturbations, extract, seed, settings,
            on_failure=lambda cid, msg: on_failure(cid, msg, None), inputs=inputs,
        )


def robust_column_filters(cohort: Cohort, values: pd.DataFrame, bcfg: BenchmarkConfig) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Per feature set, a fold filter keeping columns whose ICC on the *training* lesions >= threshold.

    Columns outside the study (volume, clinical, voxels) are always kept.
    """
    rcfg = bcfg.robustness
    cubes = robustness.value_cubes(values)
    lesion_rows = cohort.lesions

    def make(fs: FeatureSet):
        def filt(train_idx: np.ndarray) -> np.ndarray:
            train_case_ids = lesion_rows.loc[lesion_rows["row"].isin(train_idx), "case_id"].to_numpy()
            keep = np.ones(len(fs.columns), dtype=bool)
            for sset, cube in cubes.items():
                vals, n_used = robustness.icc_from_cube(cube, rcfg.icc, train_case_ids)
                if (n_used < 3).all():
                    raise BenchmarkError("robust_only: fewer than 3 training lesions of the robustness study in a fold -> raise benchmark.robustness.max_lesions")
                icc_of = dict(zip(cube.features, vals))
                for j, (col, st) in enumerate(zip(fs.columns, fs.column_study)):
                    if st == sset:
                        v = icc_of.get(col, np.nan)
                        keep[j] = bool(np.isfinite(v) and v >= rcfg.threshold)
            return keep

        return filt

    return {name: make(fs) for name, fs in cohort.sets.items() if any(st is not None for st in fs.column_study)}


def _task_filters(filters: dict, mask: np.ndarray) -> dict:
    """Column filters take task-row indices; map them back to cohort rows."""
    rows = np.flatnonzero(mask)

    def on_task_rows(f):
        return lambda train_idx: f(rows[train_idx])

    return {k: on_task_rows(f) for k, f in filters.items()}


# ----------------------------------------------------------------------------- writing
def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def _headline(summary: dict) -> str:
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


# ----------------------------------------------------------------------------- the stage
def run_benchmark(run_dir: Path, cfg: PipelineConfig, seed: int, on_failure: OnFailure, out_dir: Path,
                  extractor: LesionExtractor | None = None, extractor_reason: str = "") -> dict:
    """Load, evaluate, compare, write. Returns the summary dict (also written to summary.json)."""
    bcfg = cfg.benchmark
    if bcfg.classification is None and bcfg.survival is None:
        raise BenchmarkError("benchmark: no task configured -> set benchmark.classification.label and/or benchmark.survival.time/event")
    cohort = load_cohort(run_dir, cfg, on_failure)
    cohort, validation, ext_info = _external_split(run_dir, cfg, cohort)
    groups_all = cohort.rows["patient_id"].to_numpy()

    # robustness first: robust_only needs it inside the folds
    values = None
    rob_summary: dict = {"status": "skipped", "reason": "benchmark.robustness.enabled is false"}
    if bcfg.robustness.enabled:
        if extractor is None:
            rob_summary = {"status": "skipped", "reason": extractor_reason or "no extractor"}
            logger.warning("benchmark: robustness skipped: %s", rob_summary["reason"])
        else:
            cases = pd.read_parquet(run_dir / "ingest" / "cases.parquet")
            cases["case_id"] = cases["case_id"].astype(str)
            cases = cases[cases["case_id"].isin(set(cohort.lesions["case_id"]))]
            digests: list[dict] = []
            values = run_robustness(cases, cfg, extractor, seed, on_failure, digests)
            if values.empty:
                raise BenchmarkError("robustness: every lesion failed the perturbation study (see benchmark/failures.csv) -> fix them or set benchmark.robustness.enabled: false")
            table = robustness.icc_table(values, bcfg.robustness.icc).assign(icc_kind=bcfg.robustness.icc)
            _write_parquet(table, out_dir / "robustness.parquet")
            _write_parquet(values, out_dir / "robustness_values.parquet")
            rob_summary = {"status": "done", "reason": "", "icc": bcfg.robustness.icc,
                           "n_lesions": int(values["case_id"].nunique()), "perturbations": list(bcfg.robustness.perturbations),
                           "sets": robustness.robust_fractions(table)}
            rob_summary.update(robustness.write_study_extras(values, pd.DataFrame(digests), bcfg.robustness.icc, seed, out_dir))
    if bcfg.robustness.robust_only and values is None:
        raise BenchmarkError(f"benchmark.robustness.robust_only is set but robustness did not run ({rob_summary['reason']})")
    filters = robust_column_filters(cohort, values, bcfg) if bcfg.robustness.robust_only else {}

    summary: dict = {
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
    folds, preds, comps, kms, curves = [], [], [], [], []
    if bcfg.classification is not None:
        mask, y = classification_outcome(cohort.rows, bcfg.classification.label, on_failure)
        run = run_task("classification", cohort, mask, y, bcfg, seed, _task_filters(filters, mask))
        groups = groups_all[mask]
        s = summarise_task(run, y, groups, bcfg, seed)
        summary["classification"] = {"label": bcfg.classification.label, "n_rows": int(mask.sum()),
                                     "n_patients": int(pd.unique(groups).size), "n_positive": int(y.sum()),
                                     "n_negative": int((1 - y).sum()), **s}
        folds += run.folds
        preds += run.predictions
        comps.append(compare_sets(run, y, int(mask.sum()), bcfg, groups, seed))
        summary["classification"]["primary"] = task_inference(run, comps[-1], cohort, mask, y, bcfg, seed, _task_filters(filters, mask))
        if bcfg.label_fractions:
            curves.append(label_efficiency.run_task("classification", cohort.sets, mask, y, groups, bcfg, seed, run.results,
                                                    column_filters=_task_filters(filters, mask),
                                                    batch=None if cohort.batch is None else cohort.batch[mask]))
    if bcfg.survival is not None:
        sv = bcfg.survival
        mask, y = survival_outcome(cohort.rows, sv.time, sv.event, bcfg.cv.folds, on_failure)
        task_groups = groups_all[mask]
        ev = survival_window.choose_settings(y, cv.make_splits(cv.strata_of(y), task_groups, bcfg.cv.folds, bcfg.cv.repeats, bcfg.cv.seed),
                                             sv.horizons, sv.ibs_window)  # the same splits as run_task: training folds only
        run = run_task("survival", cohort, mask, y, bcfg, seed, _task_filters(filters, mask), survival_eval=ev)
        groups = groups_all[mask]
        s = summarise_task(run, y, groups, bcfg, seed)
        summary["survival"] = {"time": sv.time, "event": sv.event, "n_rows": int(mask.sum()), "n_patients": int(pd.unique(groups).size),
                               "n_events": int(y["event"].sum()), "horizons": list(ev.horizons),
                               "ibs_window": [float(ev.ibs_times[0]), float(ev.ibs_times[-1])] if len(ev.ibs_times) else None, **s}
        folds += run.folds
        preds += run.predictions
        kms += run.km
        comps.append(compare_sets(run, y, int(mask.sum()), bcfg, groups, seed))
        summary["survival"]["primary"] = task_inference(run, comps[-1], cohort, mask, y, bcfg, seed, _task_filters(filters, mask), ev)
        if bcfg.label_fractions:
            curves.append(label_efficiency.run_task("survival", cohort.sets, mask, y, groups, bcfg, seed, run.results, ev,
                                                    _task_filters(filters, mask), None if cohort.batch is None else cohort.batch[mask]))

    cv_results = pd.concat([f for f in folds if len(f)], ignore_index=True)
    predictions = pd.concat([p for p in preds if len(p)], ignore_index=True)
    nonempty = [c for c in comps if len(c)]
    comp_table = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=COMPARISON_COLUMNS)
    _write_parquet(cv_results, out_dir / "cv_results.parquet")
    _write_parquet(predictions, out_dir / "predictions.parquet")
    atomic_write_text(out_dir / "comparisons.csv", to_csv_text(comp_table))
    km = pd.concat(kms, ignore_index=True) if kms else pd.DataFrame(columns=KM_COLUMNS)
    _write_parquet(km[KM_COLUMNS], out_dir / "km.parquet")
    sig = comp_table["significant"].fillna(False).astype(bool) if len(comp_table) else pd.Series(dtype=bool)
    prim = (comp_table["role"] == "primary") if len(comp_table) else pd.Series(dtype=bool)
    summary["comparisons"] = {"n": int(len(comp_table)), "n_significant": int(sig.sum()),  # one test per pair
                              "n_primary": int(prim.sum()), "n_primary_significant": int((sig & prim).sum()),
                              "adjust": bcfg.adjust, "exploratory_adjust": "bh",
                              "test": f"corrected_t_{inference.resolve_method(bcfg.interval, summary['n_patients'])}"}
    summary["robustness"] = rob_summary
    summary["sample_size"] = _sample_size(summary, cohort, bcfg)
    if validation is not None:
        summary["external"] = _run_external(run_dir, cfg, cohort, validation, ext_info, seed, out_dir, on_failure)
    summary["label_efficiency"] = {"status": "skipped", "reason": "benchmark.label_fractions is empty"}
    if curves:
        le = pd.concat(curves, ignore_index=True)
        _write_parquet(le, out_dir / "label_efficiency.parquet")
        summary["label_efficiency"] = label_efficiency.summary(le, {"classification": "auc", "survival": "harrell_c"}, bcfg.label_fractions,
                                                               bcfg.label_repeats, min(bcfg.label_cv_repeats, bcfg.cv.repeats))

    # redundancy: latents vs handcrafted (+ volume), lesion level, descriptive
    red_summary: dict = {"status": "skipped", "reason": "needs both learned and handcrafted feature sets"}
    if bcfg.redundancy and {"learned", "handcrafted"} <= {n for n in ("learned", "handcrafted") if _set_present(cohort, n)}:
        lat = _lesion_frame(run_dir, "latent", cohort, LATENT_RE)
        hcf = _lesion_frame(run_dir, "radiomics", cohort, RADIOMICS_RE)
        rois = _read_table(run_dir / "preprocess" / "rois.parquet", "ROI index").set_index("case_id").loc[lat.index].reset_index()
        vol = pd.Series(baselines.volume_features(rois)[baselines.VOLUME_COLUMN].to_numpy(), name="lesion_volume_ml(log)")
        table = redundancy.redundancy_table(lat.reset_index(drop=True), hcf.loc[lat.index].reset_index(drop=True), vol)
        _write_parquet(table, out_dir / "redundancy.parquet")
        red_summary = {"status": "done", "reason": "", **redundancy.redundancy_summary(table)}
    elif not bcfg.redundancy:
        red_summary["reason"] = "benchmark.redundancy is false"
    summary["redundancy"] = red_summary
    summary["headline"] = _headline(summary)
    summary = _clean(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    return summary


# ----------------------------------------------------------------------------- external validation (radae.evaluate.external)
def _subset(cohort: Cohort, keep: np.ndarray, name: str) -> Cohort:
    """The cohort restricted to the rows in ``keep`` (every feature set and the lesion map follow)."""
    new_row = np.full(len(keep), -1)
    new_row[keep] = np.arange(int(keep.sum()))
    les = cohort.lesions[keep[cohort.lesions["row"].to_numpy()]].assign(row=lambda d: new_row[d["row"].to_numpy()])
    sets = {n: replace(fs, X=fs.X[keep]) for n, fs in cohort.sets.items()}
    return replace(cohort, rows=cohort.rows[keep].reset_index(drop=True), sets=sets, cohort=name, lesions=les.reset_index(drop=True),
                   batch=None if cohort.batch is None else cohort.batch[keep])


def _external_split(run_dir: Path, cfg: PipelineConfig, cohort: Cohort) -> tuple[Cohort, Cohort | None, dict]:
    """(development cohort, validation cohort or None, split info). Refuses a validation cohort the encoder saw."""
    ecfg = cfg.benchmark.external
    if ecfg is None:
        return cohort, None, {}
    dev, val = external.cohort_masks(cohort.rows, ecfg.column, ecfg.develop, ecfg.validate_)
    uses_latents = any(st == "learned" for fs in cohort.sets.values() for st in fs.column_study)
    pre = run_dir / "pretrain" / "summary.json"
    note = external.check_encoder_unseen(cohort.rows[val], uses_latents, json.loads(pre.read_text()) if pre.exists() else None,
                                         cfg.pretrain.include_evaluation_patients)
    info = {"column": ecfg.column, "develop": list(ecfg.develop), "validate": list(ecfg.validate_), "encoder": note,
            "n_develop_rows": int(dev.sum()), "n_validate_rows": int(val.sum()),
            "n_develop_patients": int(cohort.rows.loc[dev, "patient_id"].nunique()),
            "n_validate_patients": int(cohort.rows.loc[val, "patient_id"].nunique())}
    return _subset(cohort, dev, "external_development"), _subset(cohort, val, "external_validation"), info


def _run_external(run_dir: Path, cfg: PipelineConfig, dev: Cohort, val: Cohort, info: dict, seed: int, out_dir: Path,
                  on_failure: OnFailure) -> dict:
    bcfg = cfg.benchmark
    runs, skipped = [], {}
    for task in ("classification", "survival"):
        if (bcfg.classification if task == "classification" else bcfg.survival) is None:
            continue
        try:
            if task == "classification":
                md, yd = classification_outcome(dev.rows, bcfg.classification.label, on_failure)
                mv, yv = classification_outcome(val.rows, bcfg.classification.label, on_failure)
            else:
                sv = bcfg.survival
                md, yd = survival_outcome(dev.rows, sv.time, sv.event, bcfg.cv.folds, on_failure)
                mv, yv = survival_outcome(val.rows, sv.time, sv.event, 1, on_failure)
        except BenchmarkError as e:  # the validation cohort cannot score this task: say so, keep the others
            skipped[task] = f"validation cohort: {e}"
            logger.warning("benchmark external: %s skipped (%s)", task, e)
            continue
        runs.append(external.LockedRun(task, np.flatnonzero(md), yd, dev.rows["patient_id"].to_numpy()[md], dev.rows["case_id"].to_numpy()[md],
                                       np.flatnonzero(mv), yv, val.rows["patient_id"].to_numpy()[mv], val.rows["case_id"].to_numpy()[mv]))
    lat = run_dir / "extract" / "latent.parquet"
    from radae.features.table import read_provenance

    enc = read_provenance(lat).get("checkpoint_sha256") if lat.exists() else None
    sets = {n: replace(fs, X=np.vstack([fs.X, val.sets[n].X])) for n, fs in dev.sets.items()}  # dev rows, then validation rows
    n_dev = len(dev.rows)
    runs = [replace(r, X_val=r.X_val + n_dev) for r in runs]
    batch = None if dev.batch is None else (np.r_[dev.batch, val.batch], np.r_[dev.batch, val.batch], dev.batch_labels)
    extra = {"encoder_checkpoint_sha256": enc, "unit": dev.unit, "aggregate": cfg.extract.aggregate,
             "batch_column": bcfg.harmonise.batch if bcfg.harmonise else None}
    out = external.run_external(runs, sets, {"classification": list(bcfg.models), "survival": list(bcfg.survival_models)}, bcfg,
                                seed, out_dir, batch, extra, info["encoder"], info)
    return {**out, "skipped": skipped}


def _sample_size(summary: dict, cohort: Cohort, bcfg: BenchmarkConfig) -> dict:
    """Events per candidate predictor (after selection: the model sees at most max_features + forced columns)."""
    out = {}
    for task, ev_key in (("classification", None), ("survival", "n_events")):
        s = summary.get(task)
        if not s:
            continue
        events = min(s["n_positive"], s["n_negative"]) if ev_key is None else s[ev_key]
        per = {}
        for name, fs in cohort.sets.items():
            n_forced = int(fs.forced.sum())
            free = fs.X.shape[1] - n_forced
            k = free if bcfg.selection == "none" or fs.preprocessing == "voxel_pca" else min(bcfg.max_features, free)
            k = min(k, bcfg.voxel_pca_components) if fs.preprocessing == "voxel_pca" else k
            n_pred = k + n_forced
            per[name] = {"candidate_predictors": n_pred, "events": int(events), "events_per_predictor": events / max(n_pred, 1),
                         "warning": external.epv_note(events / max(n_pred, 1))}
        out[task] = per
    return out


def _set_present(cohort: Cohort, part: str) -> bool:
    return any(st == part for fs in cohort.sets.values() for st in fs.column_study)


def _lesion_frame(run_dir: Path, key: str, cohort: Cohort, pattern: re.Pattern) -> pd.DataFrame:
    t = _read_table(run_dir / "extract" / f"{key}.parquet", f"{key} feature table").set_index("case_id")
    t = t.loc[cohort.lesions["case_id"].to_numpy()]
    cols = [c for c in t.columns if pattern.match(str(c))]
    return t[cols].apply(pd.to_numeric, errors="coerce")


def run(ctx: RunContext) -> None:
    extractor, reason = (None, "")
    if ctx.cfg.benchmark.robustness.enabled:
        try:
            extractor, reason = find_extractors(ctx.cfg, ctx.run_dir)
        except RadaeError as e:
            extractor, reason = None, str(e)
    summary = run_benchmark(ctx.run_dir, ctx.cfg, ctx.seed, ctx.fail, ctx.stage_dir(), extractor, reason)
    logger.info("benchmark: %s", summary.get("headline", ""))
