"""The outcomes of the benchmark tasks: which ``ingest/cases.parquet`` columns they are, and their values as targets.

Refuses (BenchmarkError, one line) a label that is not binary or has one class, fewer than :data:`MIN_EVENTS` events
or fewer than :data:`MIN_EVENTS_PER_FOLD` per fold. A row whose outcome is missing is reported per case and left out
of that task.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from radae.evaluate.survival import survival_y
from radae.runfolder import OnFailure
from radae.util.errors import BenchmarkError

MIN_EVENTS = 10  # fewer events than this: no survival model can be evaluated honestly
MIN_EVENTS_PER_FOLD = 2  # events needed per outer test fold on average

#: per-case failure callback: (case_id or None, message, file or None)


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
