"""Feature tables on disk: deterministic column and row order, atomic Parquet + CSV twins, provenance, aggregation.

A lesion table has one row per lesion: ``case_id, patient_id`` first, then the features in a fixed order
(:func:`feature_order`), rows sorted by ``(patient_id, case_id)``. It is written as Parquet and as a CSV twin by
:class:`TableWriter`, chunk by chunk (one row group in memory at a time; CSV text cells that a spreadsheet would evaluate get a leading ``'``, see
:mod:`radae.util.csvsafe`, while Parquet keeps the raw values), each file through
:func:`radae.util.fsutil.atomic_path` (temp file + rename), so a crash never leaves a half-written table.

Provenance travels with the data: the Parquet schema metadata key ``radae.provenance`` holds the table's provenance
(versions, config hashes, checkpoint sha256, parameter files) as JSON; per-lesion hashes are rows of their own
table (``lesion_provenance``), not metadata, so the footer does not grow with the cohort. The creation date goes only into the
sidecar ``provenance.json`` so that identical inputs give byte-identical tables.

Patient-level tables (``extract.aggregate``): ``largest`` keeps each patient's largest lesion (by
``lesion_volume_ml``; ties -> smallest case_id), ``volume_weighted_mean`` averages every feature over the patient's
lesions weighted by lesion volume (NaN values are left out and the weights renormalised).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from radae.util.csvsafe import neutralise_cell, neutralise_frame
from radae.util.errors import ExtractError
from radae.util.fsutil import WRITE_ERRNOS, atomic_path, output_write_error
from radae.util.values import json_clean

KEYS = ["case_id", "patient_id"]
PROVENANCE_KEY = b"radae.provenance"
CLASS_ORDER = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_RADIOMICS_COL = re.compile(r"^(?P<image>[A-Za-z0-9.\-]+)_(?P<cls>shape2D|shape|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_(?P<feat>[A-Za-z0-9]+)$")
_LATENT_COL = re.compile(r"^latent_(\d+)$")
_LOG = re.compile(r"^log-sigma-(\d+)-(\d+)-mm-3D$")


def parse_radiomics_column(name: str) -> tuple[str, str, str] | None:
    """``original_glcm_Contrast`` -> ("original", "glcm", "Contrast"); None if not a PyRadiomics feature name."""
    m = _RADIOMICS_COL.match(name)
    return (m["image"], m["cls"], m["feat"]) if m else None


def _image_type_key(image: str) -> tuple:
    if image == "original":
        return (0, 0.0, image)
    m = _LOG.match(image)
    if m:
        return (1, float(f"{m[1]}.{m[2]}"), image)
    if image.startswith("wavelet"):
        return (2, 0.0, image)
    return (3, 0.0, image)


def feature_order(columns) -> list[str]:
    """Feature columns in a fixed order: latents by index; PyRadiomics by image type (original, LoG by sigma,
    wavelet, others), then feature class (shape, firstorder, glcm, glrlm, glszm, gldm, ngtdm), then name."""
    lat, rad, other = [], [], []
    for c in columns:
        if c in KEYS:
            continue
        m = _LATENT_COL.match(str(c))
        p = parse_radiomics_column(str(c))
        if m:
            lat.append((int(m[1]), c))
        elif p:
            rad.append((_image_type_key(p[0]), CLASS_ORDER.index(p[1]), p[2], c))
        else:
            other.append(c)
    return [c for _, c in sorted(lat)] + [x[-1] for x in sorted(rad)] + sorted(other)


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Keys first, features in :func:`feature_order`, rows by (patient_id, case_id), keys as text, features float64."""
    missing = [k for k in KEYS if k not in df.columns]
    if missing:
        raise ExtractError(f"feature table lacks key column(s) {missing}")
    out = df.copy()
    for k in KEYS:
        out[k] = out[k].astype(str)
    cols = feature_order(out.columns)
    out = out[KEYS + cols]
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="raise").astype(np.float64)
    dup = out["case_id"].duplicated()
    if dup.any():
        raise ExtractError(f"feature table: case_id {out['case_id'][dup].iloc[0]!r} appears twice (one row per lesion)")
    return out.sort_values(["patient_id", "case_id"], kind="mergesort").reset_index(drop=True)


#: a Parquet row group holds about this many bytes (8 per number, TEXT_BYTES per text value; within 1,024 to
#: 65,536 rows): the writer buffers at most one row group, so memory does not grow with the number of lesions
ROW_GROUP_BYTES = 4 * 2**20
TEXT_BYTES = 128
ROW_GROUP_ROWS = (1024, 65536)
_ARROW_TYPES = {"text": "string", "float": "float64", "int": "int64"}
_NUMPY_TYPES = {"float": np.dtype(np.float64), "int": np.dtype(np.int64)}


def column_kinds(df: pd.DataFrame) -> dict[str, str]:
    """``{column: "text" | "float" | "int"}`` from a frame's dtypes (bool and int -> int; other numbers -> float)."""
    out = {}
    for c, dt in df.dtypes.items():
        if pd.api.types.is_bool_dtype(dt) or pd.api.types.is_integer_dtype(dt):
            out[str(c)] = "int"
        elif pd.api.types.is_numeric_dtype(dt):
            out[str(c)] = "float"
        else:
            out[str(c)] = "text"
    return out


def lesion_columns(features) -> dict[str, str]:
    """Column kinds of a lesion table with these feature columns: the keys, then the features in feature order."""
    return {**{k: "text" for k in KEYS}, **{c: "float" for c in feature_order(features)}}


class TableWriter:
    """A table written chunk by chunk to ``<name>.parquet`` (row groups) and ``<name>.csv``, atomically.

    ``columns``: ``{name: "text" | "float" | "int"}`` in output order, known before the first row. Each chunk is
    conformed to it (missing number columns -> NaN, missing text -> ""; an unknown column is an error); at most one row group is held
    in memory. With ``sort_keys`` the rows must arrive sorted by those columns with no key twice. Both files are
    renamed into place when the ``with`` block ends cleanly; an exception leaves the previous files as they were.
    """

    def __init__(self, parquet_path: str | Path, columns: dict[str, str], provenance: dict | None = None,
                 sort_keys: tuple[str, ...] = ()):
        import pyarrow as pa

        self.path = Path(parquet_path)
        self.columns = dict(columns)
        self.sort_keys = tuple(sort_keys)
        self.rows = 0
        self._last_key: tuple | None = None
        self._buffer: list = []  # pyarrow RecordBatches of conformed chunks, at most one row group
        self._buffered = 0
        row_bytes = max(sum(TEXT_BYTES if k == "text" else 8 for k in self.columns.values()), 1)
        self.row_group_rows = int(min(max(ROW_GROUP_BYTES // row_bytes, ROW_GROUP_ROWS[0]), ROW_GROUP_ROWS[1]))
        fields = [pa.field(c, getattr(pa, _ARROW_TYPES[k])()) for c, k in self.columns.items()]
        empty = pd.DataFrame({c: pd.Series([], dtype=object if k == "text" else np.dtype(_ARROW_TYPES[k]))
                              for c, k in self.columns.items()})
        schema = pa.Table.from_pandas(empty, schema=pa.schema(fields), preserve_index=False).schema
        meta = dict(schema.metadata or {})
        if provenance is not None:
            meta[PROVENANCE_KEY] = json.dumps(json_clean(provenance), sort_keys=True, allow_nan=False, default=str).encode()
        self.schema = schema.with_metadata(meta)

    def __enter__(self) -> "TableWriter":
        import pyarrow.parquet as pq

        self._stack = contextlib.ExitStack()
        try:
            pq_tmp = self._stack.enter_context(atomic_path(self.path, suffix=".parquet"))
            csv_tmp = self._stack.enter_context(atomic_path(self.path.with_suffix(".csv"), suffix=".csv"))
            self._pq = pq.ParquetWriter(pq_tmp, self.schema)
            self._csv = open(csv_tmp, "w", newline="", encoding="utf-8")
            self._csv.write(",".join(_csv_field(neutralise_cell(c)) for c in self.columns) + "\n")
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, chunk: pd.DataFrame) -> None:
        """Append rows (a DataFrame with some or all of the columns)."""
        import pyarrow as pa

        if chunk.empty:
            return
        chunk = self._conform(chunk)
        self._check_order(chunk)
        text = [c for c, k in self.columns.items() if k == "text"]
        with self._writing(self.path.with_suffix(".csv")):  # Parquet keeps raw cells; the CSV twin is neutralised
            neutralise_frame(chunk, text).to_csv(self._csv, index=False, header=False, lineterminator="\n")
        self._buffer.append(pa.RecordBatch.from_pandas(chunk, schema=self.schema, preserve_index=False))  # compact
        self._buffered += len(chunk)
        self.rows += len(chunk)
        if self._buffered >= self.row_group_rows:
            self._flush()

    def _conform(self, chunk: pd.DataFrame) -> pd.DataFrame:
        extra = [c for c in chunk.columns if c not in self.columns]
        if extra:
            raise ExtractError(f"{self.path.name}: column(s) {extra[:5]} are not in the table's columns")
        out = chunk.reindex(columns=list(self.columns))
        dtypes = out.dtypes.to_dict()
        for c, kind in self.columns.items():
            if kind == "text":
                out[c] = out[c].map(lambda v: "" if v is None or v != v else str(v))  # missing text -> ""
            elif dtypes[c] != _NUMPY_TYPES[kind]:  # a column already of its type (most) is left as it is
                out[c] = pd.to_numeric(out[c], errors="raise").astype(_NUMPY_TYPES[kind])
        return out.reset_index(drop=True)

    def _check_order(self, chunk: pd.DataFrame) -> None:
        if not self.sort_keys:
            return
        keys = list(chunk[list(self.sort_keys)].itertuples(index=False, name=None))
        seq = ([self._last_key] if self._last_key is not None else []) + keys
        for a, b in zip(seq[:-1], seq[1:]):
            if not a < b:
                what = "appears twice" if a == b else "is out of order"
                raise ExtractError(f"{self.path.name}: row {b} {what} (rows must be sorted by {list(self.sort_keys)}, one per key)")
        self._last_key = keys[-1]

    def _flush(self, final: bool = False) -> None:
        """Write whole row groups from the buffer (and the remainder too when ``final``): row groups do not depend
        on how the caller cut the chunks, so the same rows give the same file."""
        import pyarrow as pa

        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        n = len(table) if final else len(table) // self.row_group_rows * self.row_group_rows
        if n:
            with self._writing(self.path):
                self._pq.write_table(table.slice(0, n), row_group_size=self.row_group_rows)
        rest = table.slice(n).combine_chunks()
        self._buffer, self._buffered = (rest.to_batches() if len(rest) else []), len(rest)

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Name ``path`` (the target, not its temp file) in a write error from inside: pyarrow's OSErrors carry no
        file name, and an OSError escaping a writer would be labelled by whichever temp file encloses it."""
        try:
            yield
        except OSError as e:
            code = _errno_in_text(e)
            if code not in WRITE_ERRNOS:
                raise
            raise output_write_error(path, OSError(code, os.strerror(code), str(path))) from None

    def __exit__(self, exc_type, exc, tb) -> bool:
        first: BaseException | None = None
        if exc_type is None:
            try:
                self._flush(final=True)
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the handles are closed
                first = e
        for path, handle in ((self.path, self._pq), (self.path.with_suffix(".csv"), self._csv)):
            try:  # both handles are closed, whatever failed before
                with self._writing(path):
                    handle.close()
            except BaseException as e:  # noqa: BLE001
                first = first or e
        if exc_type is not None:  # the error that ended the block wins; closing was best effort
            return bool(self._stack.__exit__(exc_type, exc, tb))
        if first is not None:
            try:
                raise first
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        return bool(self._stack.__exit__(None, None, None))


def _errno_in_text(e: OSError) -> int | None:
    """The errno of a pyarrow OSError, which has it only in its text ("... [errno 28] No space left on device")."""
    if e.errno is not None:
        return e.errno
    m = re.search(r"\[errno (\d+)\]", str(e), flags=re.IGNORECASE)
    return int(m[1]) if m else None


def _csv_field(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ',"\n') else name


def write_table(df: pd.DataFrame, parquet_path: str | Path, provenance: dict | None = None) -> tuple[Path, Path]:
    """Write ``df`` (already canonical) to ``<name>.parquet`` and ``<name>.csv`` atomically; returns both paths."""
    with TableWriter(parquet_path, column_kinds(df), provenance) as w:
        w.write(df)
    return w.path, w.path.with_suffix(".csv")


def iter_table(parquet_path: str | Path, rows: int = 4096) -> Iterator[pd.DataFrame]:
    """A Parquet table back as DataFrames of at most ``rows`` rows, in file order."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(parquet_path) as f:
        for batch in f.iter_batches(batch_size=rows):
            yield batch.to_pandas()


def read_provenance(parquet_path: str | Path) -> dict:
    """The ``radae.provenance`` JSON stored in a table's Parquet metadata ({} if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet_path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def aggregate_patients(df: pd.DataFrame, volume_ml: pd.Series, how: str) -> pd.DataFrame:
    """One row per patient from a canonical lesion table.

    ``volume_ml``: lesion volume indexed by case_id. Returns ``patient_id, n_lesions, case_ids`` (``;``-joined,
    the lesions used) and the features; ``how`` is ``largest`` or ``volume_weighted_mean``.
    """
    if how not in ("largest", "volume_weighted_mean"):
        raise ExtractError(f"extract.aggregate: {how!r} does not make a patient table (use largest or volume_weighted_mean)")
    feats = [c for c in df.columns if c not in KEYS]
    vol = volume_ml.reindex(df["case_id"]).to_numpy(dtype=float)
    if not np.isfinite(vol).all():
        bad = df["case_id"][~np.isfinite(vol)].iloc[0]
        raise ExtractError(f"case {bad}: no lesion volume in preprocess/rois.parquet, so lesions cannot be aggregated "
                           "per patient -> use extract.aggregate: all")
    work = df.assign(_vol=vol)
    rows = []
    for pid, grp in work.groupby("patient_id", sort=True):
        grp = grp.sort_values(["_vol", "case_id"], ascending=[False, True], kind="mergesort")
        row = {"patient_id": pid, "n_lesions": len(grp)}
        if how == "largest":
            row["case_ids"] = grp["case_id"].iloc[0]
            row.update(grp[feats].iloc[0].to_dict())
        else:
            row["case_ids"] = ";".join(sorted(grp["case_id"]))
            vals = grp[feats].to_numpy(dtype=float)
            w = grp["_vol"].to_numpy(dtype=float)[:, None] * np.isfinite(vals)
            num = np.nansum(vals * w, axis=0)
            den = w.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                row.update(dict(zip(feats, np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))))
        rows.append(row)
    out = pd.DataFrame(rows, columns=["patient_id", "n_lesions", "case_ids", *feats])
    out["n_lesions"] = out["n_lesions"].astype(np.int64)
    for c in feats:
        out[c] = out[c].astype(np.float64)
    return out


def whole_patients(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Chunks of a table sorted by patient_id, re-cut so that no patient is split over two chunks (a patient whose
    lesions straddle a chunk edge is held back until the next chunk: one chunk plus one patient in memory)."""
    carry: pd.DataFrame | None = None
    for chunk in chunks:
        if carry is not None and len(carry):
            chunk = pd.concat([carry, chunk], ignore_index=True)
        if chunk.empty:
            continue
        tail = (chunk["patient_id"] == chunk["patient_id"].iloc[-1]).to_numpy()
        carry = chunk[tail]
        if (~tail).any():
            yield chunk[~tail]
    if carry is not None and len(carry):
        yield carry


def aggregate_patient_chunks(chunks: Iterable[pd.DataFrame], volume_ml: pd.Series, how: str) -> Iterator[pd.DataFrame]:
    """:func:`aggregate_patients` over a lesion table read in chunks (rows sorted by patient_id, as written); each
    patient is aggregated once from all of their lesions (:func:`whole_patients`)."""
    for chunk in whole_patients(chunks):
        yield aggregate_patients(chunk, volume_ml, how)

