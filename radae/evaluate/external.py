"""External validation: develop on cohort A, lock the model, apply it once to cohort B.

The development cohort gets the nested CV as usual (the stage does that). Then, per task x feature set x
model, the whole per-set pipeline (ComBat if configured, imputation, filters, scaling, selection, model,
hyperparameters tuned by an inner patient-grouped CV) is refitted on all of A (:func:`fit_locked`), saved
with a model card (:func:`save_model`) and applied to B once. B is scored with:

- classification: AUC with a DeLong Wald interval (valid here: one locked model, independent rows) and a
  patient-bootstrap percentile interval; calibration slope and intercept (logistic recalibration of the
  logit); Brier score; a calibration curve (deciles of predicted risk); a decision curve
  (:mod:`radae.evaluate.decision`);
- survival: Harrell's C with a patient-bootstrap interval, Uno's C (censoring from A).

:func:`predict_table` is the one path from a saved model and a feature table to predictions; the CLI
``radae predict`` uses it, so a saved model gives the stage's own numbers on the same rows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import radae
from radae.evaluate import survival_utility
from radae.evaluate.locked_model import load_model, risk_at_rows, save_model, score_rows, versions
from radae.util.errors import BenchmarkError
from radae.evaluate import stats
from radae.evaluate.bootstrap import bootstrap_ci
from radae.evaluate.decision import net_benefit_table
from radae.evaluate.folds import inner_splits, strata_of
from radae.evaluate.harmonise import with_batch
from radae.evaluate.models import PipelineSpec, build_pipeline
from radae.evaluate.probability_metrics import brier_score, calibration_slope_intercept, quantile_bins
from radae.evaluate.survival import concordance_scorer, is_survival_y
from radae.evaluate.survival_metrics import harrell_c, uno_c
from radae.evaluate.units import per_patient, units_for

logger = logging.getLogger(__name__)

# patient bootstrap of the validation cohort's intervals; the other ids of SeedSequence([seed, cv seed, id]):
# radae.evaluate.tasks (7, 11, 17, 23) and radae.evaluate.curves.ROC_BAND_STREAM (31)
EXTERNAL_BOOTSTRAP_STREAM = 37

CARD_VERSION = 1
EPV_WARN = 10.0  # events per candidate predictor below this: the model is likely overfitted (Riley et al. 2019)


# ----------------------------------------------------------------------------- the split
def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().str.lower()


def cohort_masks(rows: pd.DataFrame, column: str, develop: tuple[str, ...], validate: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row masks of the development and validation cohorts. Refuses a patient in both, or an empty side."""
    if column not in rows.columns:
        raise BenchmarkError(f"benchmark.external.column: {column!r} is not a manifest column (columns: {', '.join(map(str, rows.columns))})")
    v = _text(rows[column]).fillna("")
    dev, val = v.isin(develop).to_numpy(), v.isin(validate).to_numpy()
    for name, m, want in (("develop", dev, develop), ("validate", val, validate)):
        if not m.any():
            raise BenchmarkError(f"benchmark.external.{name}: no row has {column} in {list(want)} (values: {sorted(set(v))}) -> fix the config or manifest")
    both = set(rows.loc[dev, "patient_id"]) & set(rows.loc[val, "patient_id"])
    if both:
        raise BenchmarkError(f"benchmark.external: patient {sorted(both)[0]!r} has rows in both cohorts ({column}) -> one cohort per patient")
    return dev, val


def check_encoder_unseen(rows_val: pd.DataFrame, uses_latents: bool, pretrain_summary: dict | None, include_eval: bool) -> str:
    """Refuse when the encoder may have seen validation patients; return the sentence the report prints.

    Pretraining leaves out exactly the ``is_evaluation`` patients unless ``pretrain.include_evaluation_patients``.
    """
    if not uses_latents:
        return "No learned features are evaluated, so no encoder is involved."
    if pretrain_summary is None:
        raise BenchmarkError("benchmark.external: learned features are evaluated but pretrain/summary.json is missing, so it "
                             "cannot be shown that the encoder never saw the validation cohort -> run the pretrain stage in this run")
    if include_eval or pretrain_summary.get("include_evaluation_patients"):
        raise BenchmarkError("benchmark.external: pretraining included the evaluation patients (pretrain.include_evaluation_patients: true), "
                             "so the encoder saw the validation cohort -> set it to false")
    is_eval = rows_val["is_evaluation"] if "is_evaluation" in rows_val else pd.Series(False, index=rows_val.index)
    seen = rows_val.loc[~_text(is_eval).isin(["true", "1", "1.0", "yes"]).to_numpy(), "patient_id"]
    if len(seen):
        raise BenchmarkError(f"benchmark.external: validation patient {seen.iloc[0]!r} (and {seen.nunique() - 1} more) is not an evaluation "
                             "patient, so the encoder was pretrained on its images -> list the validation cohort in data.evaluation_patients, "
                             "or give it as data.validation_manifest")
    return (f"The encoder was pretrained without any of the {rows_val['patient_id'].nunique()} validation patients "
            f"(pretraining excluded {pretrain_summary.get('excluded_evaluation_patients', 'n/a')} evaluation patients; checked).")


# ----------------------------------------------------------------------------- fitting
def pipeline_spec(task: str, model: str, preprocessing: str, bcfg, harmonise: bool) -> PipelineSpec:
    """The same per-set pipeline the nested CV fits in each fold."""
    return PipelineSpec(task=task, model=model, selection=bcfg.selection, max_features=bcfg.max_features,
                        correlation_threshold=bcfg.correlation_threshold, inner_folds=bcfg.cv.inner_folds,
                        preprocessing=preprocessing, pca_components=bcfg.voxel_pca_components, harmonise=harmonise)


def fit_locked(X: np.ndarray, y, groups: np.ndarray, spec: PipelineSpec, forced: np.ndarray, seed: int):
    """Refit the whole pipeline on all development rows, hyperparameters by inner grouped CV. Returns (pipeline, params)."""
    pipe, grid = build_pipeline(spec, forced, seed)
    n_combos = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_combos == 1:
            return clone(pipe).fit(X, y), {k: v[0] for k, v in grid.items()}
        inner = inner_splits(strata_of(y), groups, spec.inner_folds, seed)
        scoring = "roc_auc" if spec.task == "classification" else concordance_scorer
        search = GridSearchCV(pipe, grid, scoring=scoring, cv=inner, refit=True, error_score=np.nan, n_jobs=1).fit(X, y)
    if not np.isfinite(search.cv_results_["mean_test_score"]).any():
        raise BenchmarkError(f"external: every hyperparameter setting of {spec.model} failed on the development cohort")
    return search.best_estimator_, {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in search.best_params_.items()}




def model_terms(pipe, columns: list[str], harmonise: bool) -> tuple[list[str] | None, list[float] | None]:
    """Names of the predictors that reach the model (after filtering/selection) and their coefficients, if linear."""
    names_in = np.asarray(list(columns) + (["__batch__"] if harmonise else []), dtype=object)
    try:
        names = [str(n) for n in pipe[:-1].get_feature_names_out(names_in)]
    except Exception:  # voxel PCA components have no input names
        names = None
    if names is not None:
        names = [n.split("__", 1)[1] if n.startswith(("forced__", "features__")) else n for n in names]
    coef = getattr(pipe[-1], "coef_", None)
    if coef is None:
        return names, None
    coef = np.asarray(coef, dtype=float).ravel()
    return names, [float(c) for c in coef] if names is None or len(coef) == len(names) else None


def cohort_hash(case_ids, outcome) -> str:
    """sha256 of the training rows' ids and outcomes (which rows, with which labels, trained the model)."""
    frame = pd.DataFrame({"case_id": np.asarray(case_ids).astype(str)})
    if is_survival_y(outcome):
        frame["time"], frame["event"] = outcome["time"], outcome["event"].astype(int)
    else:
        frame["y"] = np.asarray(outcome).astype(int)
    return hashlib.sha256(frame.sort_values("case_id").to_csv(index=False).encode()).hexdigest()


def events_of(y) -> int:
    """Events for the sample-size rule: survival events, or the smaller class."""
    if is_survival_y(y):
        return int(np.sum(y["event"]))
    y = np.asarray(y).astype(int)
    return int(min(y.sum(), len(y) - y.sum()))


def calibration_curve(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed vs mean predicted risk per quantile bin of predicted risk (at most ``bins`` bins)."""
    idx = quantile_bins(prob, bins)
    rows = [{"bin": int(b), "n": int((idx == b).sum()), "predicted": float(prob[idx == b].mean()), "observed": float(y[idx == b].mean())}
            for b in np.unique(idx)]
    return pd.DataFrame(rows)


def classification_external(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """Validation-cohort metrics of P(y=1); ``y``/``prob``/``groups`` one entry per unit (:func:`units.per_patient`)."""
    auc, lo, hi = stats.delong_ci(y, prob)
    b = bootstrap_ci(stats.auc_score, (y, prob), groups, n_boot, rng)
    slope, intercept = calibration_slope_intercept(y, prob)
    return {"auc": {"estimate": auc, "ci_low": lo, "ci_high": hi, "ci_method": "delong"},
            "auc_bootstrap": {"estimate": b.estimate, "ci_low": b.ci_low, "ci_high": b.ci_high, "n_boot": b.n_valid,
                              "ci_method": "patient_bootstrap_percentile"},
            "calibration_slope": {"estimate": slope}, "calibration_intercept": {"estimate": intercept},
            "brier": {"estimate": brier_score(y, prob)},
            "n": int(len(y)), "n_positive": int(np.sum(y)), "prevalence": float(np.mean(y))}


def survival_external(y, risk: np.ndarray, y_train, groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """Validation-cohort Harrell C (patient bootstrap) and Uno C (censoring of the development cohort ``y_train``)."""
    b = bootstrap_ci(harrell_c, (y["time"], y["event"], risk), groups, n_boot, rng)
    uno = uno_c(y["time"], y["event"], risk, y_train["time"], y_train["event"])
    return {"harrell_c": {"estimate": b.estimate, "ci_low": b.ci_low, "ci_high": b.ci_high, "n_boot": b.n_valid,
                          "ci_method": "patient_bootstrap_percentile"},
            "uno_c": {"estimate": float(uno)}, "n": int(len(risk)), "n_events": int(np.sum(y["event"]))}


@dataclass
class LockedRun:
    """What the stage hands over per task: development and validation rows of one task."""

    task: str
    X_dev: np.ndarray
    y_dev: object
    groups_dev: np.ndarray
    case_dev: np.ndarray
    X_val: np.ndarray
    y_val: object
    groups_val: np.ndarray
    case_val: np.ndarray


def validate_locked(run: LockedRun, set_name: str, columns: list[str], forced: np.ndarray, preprocessing: str, model: str,
                    bcfg, seed: int, batch: tuple[np.ndarray, np.ndarray, list[str]] | None, card_extra: dict, models_dir: Path,
                    rng: np.random.Generator) -> tuple[dict, pd.DataFrame, dict]:
    """Fit on A, save, score B once. Returns (metrics entry, prediction rows, {"calibration", "decision"} tables)."""
    spec = pipeline_spec(run.task, model, preprocessing, bcfg, batch is not None)
    Xd, Xv, fz = run.X_dev, run.X_val, forced
    if batch is not None:
        new = sorted(set(np.unique(batch[1]).astype(int)) - set(np.unique(batch[0]).astype(int)))
        if new:
            raise BenchmarkError(f"benchmark.harmonise: site {batch[2][new[0]]!r} is in the validation cohort only, so ComBat cannot "
                                 "correct it -> every validation site must also be in the development cohort")
        Xd, fz, _ = with_batch(Xd, forced, batch[0])
        Xv, _, _ = with_batch(Xv, forced, batch[1])
    u_dev = units_for(run.y_dev, run.groups_dev)
    y_units = run.y_dev if u_dev is None else u_dev.take(run.y_dev)
    if run.task == "survival" and u_dev is not None:  # as in the CV folds: one row per patient, its lesions' mean
        Xd, y_fit, g_fit = u_dev.mean(Xd), y_units, u_dev.patients
    else:
        y_fit, g_fit = run.y_dev, run.groups_dev
    pipe, params = fit_locked(Xd, y_fit, g_fit, spec, fz, seed)
    names, coefs = model_terms(pipe, columns, batch is not None)
    n_pred = len(names) if names is not None else int(getattr(pipe[-1], "n_features_in_", len(columns)))
    events = events_of(y_units)
    card = {
        "card_version": CARD_VERSION, "task": run.task, "feature_set": set_name, "model": model,
        "input_columns": list(columns), "forced_columns": [c for c, f in zip(columns, forced) if f],
        "model_features": names, "coefficients": dict(zip(names, coefs)) if names and coefs else coefs,
        "intercept": float(np.ravel(getattr(pipe[-1], "intercept_", [np.nan]))[0]) if hasattr(pipe[-1], "intercept_") else None,
        "preprocessing": [name for name, _ in pipe.steps[:-1]], "spec": {k: v for k, v in spec.__dict__.items()},
        "best_params": params, "n_train": int(len(run.groups_dev)), "n_train_patients": int(pd.unique(run.groups_dev).size),
        "events": events, "candidate_predictors": n_pred, "events_per_predictor": events / max(n_pred, 1),
        "training_cohort_sha256": cohort_hash(run.case_dev, run.y_dev), "versions": versions(),
        "harmonise": None if batch is None else {"batch": card_extra["batch_column"], "labels": batch[2]},
        "seed": seed, **{k: v for k, v in card_extra.items() if k != "batch_column"},
        "rows": "patient_mean" if run.task == "survival" and u_dev is not None else "row",
    }
    stem = f"{run.task}__{set_name}__{model}".replace("+", "_plus_")
    save_model(models_dir / f"{stem}.joblib", pipe, card)
    # B is scored by the model as read back from disk: what `radae predict` gives is what the stage reports
    locked = load_model(models_dir / f"{stem}.joblib")["pipeline"]
    s = score_rows(locked, Xv, card, run.groups_val)
    tables: dict = {}
    yv, gv, sv = per_patient(run.y_val, run.groups_val, s)  # metrics count patients
    if run.task == "classification":
        entry = classification_external(yv, sv, gv, bcfg.bootstrap, rng)
        tables["calibration"] = calibration_curve(np.asarray(yv, float), sv)
        tables["decision"] = net_benefit_table(np.asarray(yv, int), sv)
    else:
        entry = survival_external(yv, sv, y_units, gv, bcfg.bootstrap, rng)
        t = survival_utility.horizon(y_units, bcfg.survival.horizons if bcfg.survival else ())
        if np.isfinite(t):  # predicted risk by t against the validation cohort's Kaplan-Meier risk
            risk_t = per_patient(run.y_val, run.groups_val, risk_at_rows(locked, Xv, card, run.groups_val, t))[2]
            tables["calibration"] = survival_utility.calibration_table(yv["time"], yv["event"], risk_t, t).assign(horizon=t)
            tables["decision"] = survival_utility.net_benefit_table(yv["time"], yv["event"], risk_t, t).assign(horizon=t)
            entry["horizon"] = t
            entry["risk_at_horizon"] = {"estimate": float(np.mean(risk_t)),
                                        "observed": survival_utility.km_risk(yv["time"], yv["event"], t)}
    entry.update(model_file=f"models/{stem}.joblib", events_per_predictor=card["events_per_predictor"],
                 candidate_predictors=n_pred, events=events, training_cohort_sha256=card["training_cohort_sha256"])
    pred = pd.DataFrame({"task": run.task, "feature_set": set_name, "model": model, "case_id": run.case_val,
                         "patient_id": run.groups_val, "score": s})
    return entry, pred, tables


def epv_note(epv: float) -> str:
    return "" if not np.isfinite(epv) or epv >= EPV_WARN else f"fewer than {EPV_WARN:g} events per candidate predictor: likely overfitted"


__all__ = ["cohort_masks", "check_encoder_unseen", "fit_locked", "validate_locked", "replace"]


# ----------------------------------------------------------------------------- the stage's part
def run_external(runs: list[LockedRun], sets: dict, models: dict[str, list[str]], bcfg, seed: int, out_dir: Path,
                 batch: tuple[np.ndarray, np.ndarray, list[str]] | None, card_extra: dict, encoder_note: str, split: dict) -> dict:
    """Every task x feature set x model: lock on A, save, apply to B. Writes ``benchmark/external/`` and ``benchmark/models/``.

    ``sets``: name -> object with ``columns``, ``X`` (all cohort rows; the runs index them), ``forced``, ``preprocessing``;
    each LockedRun carries the row indices of its task in ``X_dev``/``X_val`` as integer arrays.
    """
    from radae.util.fsutil import atomic_path, atomic_write_text

    ext_dir, models_dir = out_dir / "external", out_dir / "models"
    ext_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, bcfg.cv.seed, EXTERNAL_BOOTSTRAP_STREAM]))
    results: dict = {}
    preds, cal, dec, metric_rows = [], [], [], []
    for run in runs:
        i_dev, i_val = run.X_dev, run.X_val
        for name, fs in sets.items():
            for model in models[run.task]:
                logger.info("benchmark external %s: %s / %s (locked on the development cohort)", run.task, name, model)
                r = replace(run, X_dev=fs.X[i_dev], X_val=fs.X[i_val])
                b = None if batch is None else (batch[0][i_dev], batch[1][i_val], batch[2])
                entry, pred, tables = validate_locked(r, name, list(fs.columns), fs.forced, fs.preprocessing, model, bcfg, seed, b,
                                                      card_extra, models_dir, rng)
                results.setdefault(run.task, {}).setdefault(name, {})[model] = entry
                preds.append(pred)
                keys = dict(task=run.task, feature_set=name, model=model)
                for k, t in tables.items():
                    (cal if k == "calibration" else dec).append(t.assign(**keys))
                for metric, v in entry.items():
                    if isinstance(v, dict):
                        metric_rows.append({**keys, "metric": metric, "estimate": v.get("estimate"), "ci_low": v.get("ci_low", np.nan),
                                            "ci_high": v.get("ci_high", np.nan), "ci_method": v.get("ci_method", "")})
                if run.task == runs[0].task and model == models[run.task][0]:
                    _write_features(ext_dir / f"features__{name}.parquet".replace("+", "_plus_"), fs, i_val, r.case_val,
                                    r.groups_val, b, card_extra)
    for fname, frames in (("predictions.parquet", preds), ("calibration.parquet", cal), ("decision_curve.parquet", dec)):
        if frames:
            with atomic_path(ext_dir / fname, suffix=".parquet") as tmp:
                pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    atomic_write_text(ext_dir / "metrics.csv", pd.DataFrame(metric_rows).to_csv(index=False))
    return {"split": split, "encoder": encoder_note, "results": results, "epv_warn_below": EPV_WARN}


def _write_features(path: Path, fs, idx: np.ndarray, case_ids, patient_ids, batch, card_extra: dict) -> None:
    """The validation cohort's rows of one feature set, as ``radae predict`` reads them (provenance in the metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame(fs.X[idx], columns=list(fs.columns))
    frame.insert(0, "patient_id", np.asarray(patient_ids).astype(str))
    frame.insert(0, "case_id", np.asarray(case_ids).astype(str))
    if batch is not None:
        frame[card_extra["batch_column"]] = np.asarray(batch[2], dtype=object)[batch[1].astype(int)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    prov = {"radae_version": radae.__version__, "versions": {"radae": radae.__version__},
            "checkpoint_sha256": card_extra.get("encoder_checkpoint_sha256"), "table": "external_features"}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"radae.provenance": json.dumps(prov).encode()})
    from radae.util.fsutil import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
