"""What every report section shares: the :class:`Context`, number and table formatting, outcome columns.

Every section function takes the :class:`Context` and returns a :class:`~radae.report.blocks.Section`.
A section whose inputs are absent says so plainly and shows nothing invented. Numbers stated as
results go through ``ctx.keys.put`` (they end up in ``report/summary.json``); descriptive numbers
in captions are plain text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import Markup
from pydantic import ValidationError

from radae.config.benchmark import BenchmarkConfig
from radae.report import plots
from radae.report.artifacts import RunFolder
from radae.report.blocks import Figure, Table
from radae.report.keys import KeyNumbers, format_number
from radae.util.values import as_text


@dataclass
class Context:
    """What a section reads from: the run folder, the key-number store and the resolved config."""

    run: RunFolder
    keys: KeyNumbers
    cfg: dict  # config.resolved.yaml as a plain dict ({} when absent)
    max_rows: int = 50

    def section_cfg(self, *path: str):
        node = self.cfg
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node


def unit_word(unit: str | None) -> str:
    """What one benchmark row is, for "N patients, M {unit}s" ("34 patients, 34 patients" would read as a typo)."""
    return {"patient": "patient-level row", None: "row"}.get(unit, unit)


def pretrain_saw_evaluation_images(ctx: "Context") -> bool:
    """``pretrain.include_evaluation_patients``: the encoder was trained on the evaluation patients' images too."""
    return bool((ctx.section_cfg("pretrain") or {}).get("include_evaluation_patients"))


def no_evaluation_patients(ctx: "Context") -> bool:
    """No patient was designated for evaluation: pretraining saw every benchmarked patient's images."""
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None or "is_evaluation" not in cases:
        return False
    return not cases["is_evaluation"].astype(bool).any()


NO_HOLDOUT = ("no patient was designated as an evaluation patient (data.evaluation_patients / data.holdout_fraction), so "
              "pretraining used every patient's images and the benchmark evaluates patients the encoder was trained on; "
              "their labels were never used, but learned features may look better than on new patients")


def fig(figure, caption: str | Markup, alt: str) -> Figure:
    return Figure(plots.to_data_uri(figure), caption, alt)


def plain(value, spec: str = ".3g") -> str:
    return format_number(value, spec)


def numeric(s: pd.Series) -> pd.Series:
    """Outcome columns arrive as strings from the manifest ("1.0", "201.3"); empty -> NaN."""
    return pd.to_numeric(s, errors="coerce")


def table_from_frame(df: pd.DataFrame, caption: str | Markup = "", max_rows: int | None = None, digits: int = 3,
                     wide: tuple[str, ...] = (), collapsed: bool = False) -> Table:
    """A blocks.Table from a DataFrame: floats to ``digits`` significant digits, long tables cut with a note."""
    shown = df if max_rows is None else df.head(max_rows)
    rows = []
    for rec in shown.itertuples(index=False):
        row = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                row.append(plain(v, f".{digits}g"))
            else:
                row.append(v if isinstance(v, str) else as_text(v))  # Markup stays Markup; None -> ""
        rows.append(row)
    numeric_cols = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    if max_rows is not None and len(df) > max_rows:
        caption = Markup("{} (first {} of {} rows; the full table is in the run folder)").format(caption, max_rows, len(df))
    return Table([str(c) for c in df.columns], rows, caption, numeric=numeric_cols, wide=[c in wide for c in df.columns],
                 collapsed=collapsed)


CONFIG = "config.resolved.yaml"
BAD_BENCHMARK = "unreadable as benchmark config"  # the note outcome_spec leaves on CONFIG


def outcome_spec(ctx: Context) -> dict[str, str | None]:
    """Outcome column names by role (label, time, event; None when not configured), read by
    :meth:`BenchmarkConfig.outcome_roles` from the resolved config's benchmark section. A section that does not validate
    (a run from another radae version) gives no outcomes and a note on config.resolved.yaml, not a crash."""
    try:
        return BenchmarkConfig.model_validate(ctx.section_cfg("benchmark") or {}).outcome_roles()
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        ctx.run.notes[CONFIG] = f"{BAD_BENCHMARK} (benchmark.{where}: {first['msg']})"
        return {"label": None, "time": None, "event": None}


def patient_outcomes(ctx: Context) -> pd.DataFrame | None:
    """One row per patient with numeric outcome columns (first lesion's values; they are patient-level)."""
    cases = ctx.run.table("ingest/cases.parquet")
    if cases is None:
        return None
    spec = outcome_spec(ctx)
    cols = [c for c in (spec["label"], spec["time"], spec["event"]) if c and c in cases.columns]
    out = cases.drop_duplicates("patient_id")[["patient_id", *cols]].copy()
    for c in cols:
        out[c] = numeric(out[c])
    return out.reset_index(drop=True)


def first_entry(d: dict | None):
    """The first (key, value) of ``d``; (None, None) when it is empty or None."""
    return next(iter(d.items())) if d else (None, None)


def skip_reason(ctx: Context, part: str) -> str:
    """Why the benchmark skipped robustness/redundancy, as it recorded in its summary.json ("" if it did not)."""
    info = (ctx.run.json("benchmark/summary.json") or {}).get(part) or {}
    if info.get("status") == "skipped":
        return f"the benchmark skipped it: {info.get('reason') or 'no reason given'}"
    return ""
