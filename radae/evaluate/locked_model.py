"""Locked models on disk: ``benchmark/models/<task>__<set>__<model>.joblib`` with its card, and ``radae predict``.

A bundle is ``{"pipeline", "card"}``; the card (also written beside it as JSON) names the task, the input columns,
the feature provenance and the versions it was fitted with, so a prediction on another table is refused, in one line,
when the columns or the encoder do not match (:func:`check_schema`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import radae
from radae.runfolder import is_latent_column
from radae.util.errors import BenchmarkError
from radae.evaluate.harmonise import with_batch
from radae.evaluate.units import Units

logger = logging.getLogger(__name__)


ID_COLUMNS = ("case_id", "patient_id")
NON_FEATURE = ("n_lesions", "case_ids")  # bookkeeping columns of extract/*_patient.parquet


def score(pipe, X: np.ndarray, task: str) -> np.ndarray:
    """P(y=1) or the risk score."""
    return pipe.predict_proba(X)[:, 1] if task == "classification" else pipe.predict(X)


def _on_rows(predict, X: np.ndarray, card: dict, patients) -> np.ndarray:
    """``predict`` per row; a model fitted on patient means (card ``rows: patient_mean``, the survival models of a
    multi-lesion cohort) predicts each patient's mean feature row, and that value goes to every row of the patient."""
    if card.get("rows") != "patient_mean" or patients is None:
        return predict(X)
    u = Units.of(patients)
    return u.spread(predict(u.mean(X)))


def score_rows(pipe, X: np.ndarray, card: dict, patients) -> np.ndarray:
    """Per row, the model's score (P(y=1) or risk)."""
    return _on_rows(lambda A: score(pipe, A, card["task"]), X, card, patients)


def risk_at_rows(pipe, X: np.ndarray, card: dict, patients, t: float) -> np.ndarray:
    """Per row, a survival model's predicted risk by time t, ``1 - S(t | x)``."""
    return _on_rows(lambda A: 1.0 - pipe[-1].predict_survival(pipe[:-1].transform(A), np.array([t]))[:, 0], X, card, patients)


def versions() -> dict:
    import sklearn

    return {"radae": radae.__version__, "sklearn": sklearn.__version__}


def save_model(path: Path, pipe, card: dict) -> None:
    """``<path>.joblib`` holds {"pipeline", "card"}; the card also goes beside it as JSON."""
    import joblib

    from radae.util.fsutil import atomic_path, atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".joblib") as tmp:
        joblib.dump({"pipeline": pipe, "card": card}, tmp)
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=1, allow_nan=False, default=str) + "\n")


# ----------------------------------------------------------------------------- applying a saved model
def load_model(path: Path) -> dict:
    import joblib

    try:
        bundle = joblib.load(path)
    except FileNotFoundError:
        raise BenchmarkError(f"file {path}: model not found") from None
    except Exception as e:  # unpickling errors come in many types
        raise BenchmarkError(f"file {path}: not a radae model ({type(e).__name__}: {e})") from None
    if not isinstance(bundle, dict) or "pipeline" not in bundle or "card" not in bundle:
        raise BenchmarkError(f"file {path}: not a radae model (expected a saved benchmark/models/*.joblib)")
    return bundle


def check_schema(card: dict, table: pd.DataFrame, provenance: dict, where: str) -> None:
    """One clear error for a table the model cannot be applied to: missing/extra columns, other versions."""
    want = list(card["input_columns"])
    batch = (card.get("harmonise") or {}).get("batch")
    allowed = set(ID_COLUMNS) | ({batch} if batch else set())
    missing = [c for c in want + ([batch] if batch else []) if c not in table.columns]
    if missing:
        raise BenchmarkError(f"file {where}: {len(missing)} column(s) the model needs are missing (first: {missing[0]!r})")
    # PyRadiomics diagnostics and the patient tables' bookkeeping columns are not features: ignored
    extra = [c for c in table.columns if c not in set(want) | allowed | set(NON_FEATURE) and not str(c).startswith("diagnostics_")]
    if extra:
        raise BenchmarkError(f"file {where}: {len(extra)} column(s) the model was not trained on (first: {extra[0]!r}) -> "
                             "select the model's input_columns (see its card)")
    if "case_id" not in table.columns and "patient_id" not in table.columns:
        raise BenchmarkError(f"file {where}: neither case_id nor patient_id is a column; predictions need an id")
    have_v = (provenance.get("versions") or {}).get("radae") or provenance.get("radae_version")
    if have_v and have_v != card["versions"]["radae"]:
        raise BenchmarkError(f"file {where}: features from radae {have_v}, but the model was trained on radae {card['versions']['radae']} features -> re-extract with that version")
    enc = card.get("encoder_checkpoint_sha256")
    have_enc = provenance.get("checkpoint_sha256")
    if enc and have_enc and have_enc != enc:
        raise BenchmarkError(f"file {where}: latents from encoder checkpoint {have_enc[:12]}, but the model expects {enc[:12]} -> extract with the model's encoder")
    if enc and not have_enc and any(is_latent_column(c) for c in want):
        logger.warning("%s: no encoder provenance in the table; cannot check that its latents come from checkpoint %s", where, enc[:12])
    if batch:
        unseen = sorted(set(table[batch].astype(str)) - set(card["harmonise"]["labels"]))
        if unseen:
            raise BenchmarkError(f"file {where}: {batch} value {unseen[0]!r} was not in the development cohort; ComBat has no estimate for it")


def predict_table(bundle: dict, table: pd.DataFrame, provenance: dict | None = None, where: str = "table") -> pd.DataFrame:
    """Apply a saved model to a feature table: case_id, patient_id, score (P(y=1) or risk)."""
    card, pipe = bundle["card"], bundle["pipeline"]
    check_schema(card, table, provenance or {}, where)
    X = np.empty((len(table), len(card["input_columns"])))
    for j, c in enumerate(card["input_columns"]):
        col = pd.to_numeric(table[c], errors="coerce")
        if col.isna().sum() > table[c].isna().sum():
            raise BenchmarkError(f"file {where}: column {c} holds non-numeric values")
        X[:, j] = col.to_numpy(dtype=float)
    X[~np.isfinite(X)] = np.nan
    batch = (card.get("harmonise") or {}).get("batch")
    if batch:
        code = {v: i for i, v in enumerate(card["harmonise"]["labels"])}
        X, _, _ = with_batch(X, np.zeros(X.shape[1], bool), table[batch].astype(str).map(code).to_numpy(dtype=float))
    if card.get("rows") == "patient_mean" and "patient_id" not in table:
        raise BenchmarkError(f"file {where}: the model scores patients (mean of their lesions' features) but the table has no patient_id column")
    patients = table["patient_id"].astype(str).to_numpy() if "patient_id" in table else None
    out = pd.DataFrame({"case_id": table["case_id"].astype(str).to_numpy() if "case_id" in table else "",
                        "patient_id": patients if patients is not None else "",
                        "score": score_rows(pipe, X, card, patients)})
    return out


# ----------------------------------------------------------------------------- metrics on the validation cohort
