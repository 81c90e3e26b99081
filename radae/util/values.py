"""Cell values as radae reads and writes them: text, booleans and strict JSON (one rule each, used everywhere)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

TRUE_TEXT = ("true", "1", "1.0", "yes", "y", "t")


def as_text(v) -> str:
    """A table cell as text; missing (None, NaN, pd.NA) -> ""."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def as_bool(v) -> bool:
    """True/False from a bool, 0/1 or text like "true"/"yes" (:data:`TRUE_TEXT`); missing -> False."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return False
    if isinstance(v, str):
        return v.strip().lower() in TRUE_TEXT
    return bool(v)


def bool_column(col: pd.Series) -> np.ndarray:
    """:func:`as_bool` of every cell of ``col`` (vectorised)."""
    if col.dtype == bool:
        return col.to_numpy()
    text = col.astype("string").str.strip().str.lower()
    return text.isin(list(TRUE_TEXT)).fillna(False).to_numpy(dtype=bool)


def json_clean(obj):
    """Strict-JSON-safe copy: non-finite floats -> None, numpy scalars -> Python, dict keys -> str (recursive)."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return json_clean(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
