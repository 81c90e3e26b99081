"""CSV cells that a spreadsheet would run as a formula are neutralised (OWASP "CSV injection").

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a leading single
quote (``=HYPERLINK(...)`` -> ``'=HYPERLINK(...)``), so Excel/LibreOffice show it as text instead of evaluating it.
Only text cells are touched: number columns keep their values (``-0.5`` stays a number), and a text cell that is a
plain number (``-3``, ``+1.5e-2``) is left as it is, since it cannot run anything. Parquet files keep the raw
values; this applies to radae's CSV outputs only (feature tables, lesion provenance, failures, data dictionary,
comparisons). Manifests radae writes for itself to read back (synth, import, ``manifest scan``) are inputs, not
reports, and stay raw so the ids read back are the ids written.
"""
from __future__ import annotations

import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise_cell(value):
    """``value`` with a leading ``'`` if it is text a spreadsheet would evaluate; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame, columns=None) -> pd.DataFrame:
    """A copy of ``df`` with the text cells of ``columns`` (default: every non-numeric column) neutralised."""
    if columns is None:
        columns = [c for c, dt in df.dtypes.items() if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))]
    out = df.copy()
    for c in columns:
        if c in out.columns:
            out[c] = out[c].map(neutralise_cell)
    return out


def to_csv_text(df: pd.DataFrame, **kwargs) -> str:
    """``df.to_csv(index=False, **kwargs)`` with text cells neutralised: the one way radae writes report CSVs."""
    return neutralise_frame(df).to_csv(index=False, **kwargs)
