"""Manifest file -> validated table of lesions. Every check on a row lives here.

A manifest (CSV or Parquet) has one row per lesion:

==============  ==========================================================================
column          meaning
==============  ==========================================================================
case_id         unique lesion id (required)
patient_id      patient id; several lesions may share it (required)
image           NIfTI/NRRD/MHA file or DICOM series folder (required)
mask            label image, DICOM RTSTRUCT or DICOM SEG (optional if a seed is given)
mask_label      integer label (label image / SEG segment) or ROI name (RTSTRUCT)
seed_x/y/z      lesion centre in physical LPS mm, instead of a mask
modality        CT, MR, PET or any other tag (required)
series_uid      pick this series when the image folder holds several
anything else   outcomes and clinical covariates (the benchmark stage names which)
==============  ==========================================================================

Relative paths resolve against the manifest's folder; ``${RADAE_DATA}`` expands to the data root.
Problems are collected for all rows and raised together, one line per row.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import hmac
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from radae.config import data_root
from radae.util.errors import ManifestError

REQUIRED = ("case_id", "patient_id", "image", "modality")
KNOWN = REQUIRED + ("mask", "mask_label", "seed_x", "seed_y", "seed_z", "series_uid")
SEED_COLS = ("seed_x", "seed_y", "seed_z")
MAX_SHOWN = 20
_BOOL_WORDS = {"true": "1", "false": "0"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COMMA_NUMBER = re.compile(r"\s*[-+]?\d+(,\d+)+\s*")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet manifest with every column as string (types are checked per column later)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path}: file not found")
    header: list[str] = []  # the CSV's own header row: pandas renames a repeated name ("os_time.1")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            df = df.astype({c: "string" for c in df.columns}).astype(object).where(df.notna(), None)
        else:
            text = _csv_text(path)
            header = [str(c).strip() for c in next(csv.reader(io.StringIO(text)), [])]
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
            df = df.astype(object).where(df.notna(), None)
    except pd.errors.ParserError as e:
        raise ManifestError(f"manifest {path}: cannot parse ({str(e).splitlines()[0][:160]}) -> quote cells that contain "
                            'commas ("a, b") and give every row the same number of cells') from None
    except (ValueError, OSError, csv.Error) as e:
        raise ManifestError(f"manifest {path}: cannot parse ({str(e).splitlines()[0][:160]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and (";" in df.columns[0] or "\t" in df.columns[0]):
        sep = "';'" if ";" in df.columns[0] else "tabs"
        raise ManifestError(f"manifest {path}: columns are separated by {sep}, not commas (a regional Excel export?) -> save "
                            "it as comma-separated CSV (Excel: 'CSV UTF-8 (comma delimited)')")
    df = df.dropna(how="all")  # rows of empty cells (",,,,"): left by spreadsheet exports, carry nothing
    dups = sorted({c for c in header if header.count(c) > 1})
    dups = dups or sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dups:
        raise ManifestError(f"manifest {path}: column(s) {dups} appear more than once -> keep one column per name")
    return df


def _csv_text(path: Path) -> str:
    """The manifest's text, refusing what pandas would misread: a workbook, UTF-16, NUL bytes, non-UTF-8 bytes."""
    raw = path.read_bytes()
    if raw.startswith(b"PK\x03\x04"):
        raise ManifestError(f"manifest {path}: is a ZIP archive (an Excel .xlsx workbook?), not CSV text -> export it as "
                            "'CSV UTF-8 (comma delimited)' or give a Parquet file")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ManifestError(f"manifest {path}: is UTF-16 text (Excel 'Unicode Text'), not UTF-8 -> save it as "
                            "'CSV UTF-8 (comma delimited)'")
    if b"\x00" in raw:  # pandas cuts a cell at a NUL byte without a word
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise ManifestError(f"manifest {path}: holds a NUL byte (line {line}): a binary file or a damaged export -> "
                            "re-export it as CSV UTF-8 text")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ManifestError(f"manifest {path}: is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}; a Latin-1 or "
                            "Windows-1252 export?) -> save it as 'CSV UTF-8' (Excel) or convert it "
                            "(iconv -f latin1 -t utf-8)") from None


def _expand(value: str) -> str:
    if "$RADAE_DATA" not in value and "${RADAE_DATA}" not in value:
        return value
    root = str(data_root())
    return value.replace("${RADAE_DATA}", root).replace("$RADAE_DATA", root)


def _resolve(value, base: Path) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    text = _expand(str(value).strip())
    if "\x00" in text:
        raise ValueError("NUL character in path")
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _inside(path: str, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def pseudonymise(patient_id: str, key: str) -> str:
    """Keyed hash (HMAC-SHA256) of a patient id: stable for a key, not reversible without it."""
    return "P" + hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:16]


class _Problems:
    """Problems found in one manifest: errors (every one is listed) and file problems (skippable rows)."""

    def __init__(self, name: str, skipped: list[dict] | None):
        self.name, self.skipped = name, skipped
        self.errors: list[str] = []
        self.files: dict[int, tuple[str | None, str]] = {}  # row -> (file, message): skippable when ``skipped`` is given

    def bad(self, i: int, case: object, msg: str) -> None:
        self.errors.append(f"manifest {self.name}: row {i + 2} (case {case}): {msg}")

    def bad_file(self, i: int, case: object, file: str | None, msg: str) -> None:
        if self.skipped is None:
            self.bad(i, case, msg)
        elif i not in self.files:
            self.files[i] = (file, f"manifest {self.name}: row {i + 2} (case {case}): {msg}")


def load_manifest(
    path: str | Path,
    required_columns: tuple[str, ...] = (),
    numeric_columns: tuple[str, ...] = (),
    binary_columns: tuple[str, ...] = (),
    nonnegative_columns: tuple[str, ...] = (),
    root: str | Path | None = None,
    check_files: bool = True,
    modalities: list[str] | None = None,
    pseudonymise_key: str | None = None,
    skipped: list[dict] | None = None,
) -> pd.DataFrame:
    """Validate a manifest and return it with absolute paths and typed outcome columns.

    ``required_columns``: columns the config uses (outcomes, clinical); empty cells are allowed (unlabeled
    scans for pretraining; the benchmark drops them and says how many). ``numeric_columns`` must parse as
    numbers (finite), ``binary_columns`` must be 0/1 (``true``/``false`` accepted), ``nonnegative_columns`` >= 0.
    The ``required_columns`` must agree within a patient (other columns may differ per lesion). ``root``: if
    given, no path may point outside it (symlinks resolved). ``pseudonymise_key``: patient ids (and where a
    case id contains the patient id, that part of it) become keyed hashes. Raises ManifestError listing every
    problem.

    ``skipped``: if a list is given, rows whose image or mask file is missing, unreadable as a path (symlink loop)
    or not a regular file/folder are left out and appended to it as ``{"case_id", "file", "message"}`` instead of
    being errors (the run records them in failures.csv and goes on with the other rows); ``radae validate`` passes
    none, so they stay errors there.
    """
    path = Path(path)
    df = read_table(path)
    name = str(path)
    missing = [c for c in REQUIRED + tuple(required_columns) if c not in df.columns]
    if missing:
        raise ManifestError(
            f"manifest {name}: missing column(s) {missing}; present: {list(df.columns)}"
            + (" (columns named by the config must exist)" if set(missing) & set(required_columns) else "")
            + " -> add the column(s) or fix the config (see README 'Manifest format')"
        )
    if len(df) == 0:
        raise ManifestError(f"manifest {name}: no rows -> add one row per lesion")
    pr = _Problems(name, skipped)
    _check_keys(df, pr)
    _resolve_paths(df, path.resolve().parent, pr)
    _check_rows(df, pr, Path(_expand(str(root))).resolve() if root is not None else None, check_files)
    _check_values(df, pr, numeric_columns, binary_columns, nonnegative_columns)
    _check_per_patient(df, pr, required_columns)
    if pr.errors:
        more = f" ... and {len(pr.errors) - MAX_SHOWN} more" if len(pr.errors) > MAX_SHOWN else ""
        raise ManifestError("\n".join(pr.errors[:MAX_SHOWN]) + more)
    if pr.files:
        df = _skip_file_problems(df, pr, modalities, pseudonymise_key)
    if modalities:
        keep = {m.upper() for m in modalities}
        df = df[df["modality"].isin(keep)].reset_index(drop=True)
        if len(df) == 0:
            raise ManifestError(f"manifest {name}: no rows with modality in {sorted(keep)} -> check data.modalities")
    if pseudonymise_key:
        pseudo = {p: pseudonymise(p, pseudonymise_key) for p in df["patient_id"].unique()}
        # case ids often embed the patient id (STS_001_MR): replace it there too
        df["case_id"] = [c.replace(p, pseudo[p]) if p and p in c else c for c, p in zip(df["case_id"], df["patient_id"])]
        df["patient_id"] = df["patient_id"].map(pseudo)
    return df.reset_index(drop=True)


def _check_keys(df: pd.DataFrame, pr: _Problems) -> None:
    """Required cells filled in, ids stripped (modality upper-cased), case ids unique."""
    for col in ("case_id", "patient_id", "modality", "image"):
        for i, v in df[col].items():
            if v is None or str(v).strip() == "":
                pr.bad(i, df.at[i, "case_id"], f"empty {col} -> fill it in (required column)")
    df["case_id"] = df["case_id"].map(lambda v: None if v is None else str(v).strip())
    df["patient_id"] = df["patient_id"].map(lambda v: None if v is None else str(v).strip())
    df["modality"] = df["modality"].map(lambda v: None if v is None else str(v).strip().upper())
    for col in ("case_id", "patient_id"):
        for i, v in df[col].items():
            if v is not None and _CONTROL.search(v):
                pr.bad(i, repr(df.at[i, "case_id"]), f"{col} {v!r} holds a line break or control character -> remove it (ids "
                                                     "go into file names, tables and one-line messages)")
    dup = df["case_id"].duplicated(keep=False) & df["case_id"].notna()
    for i in df.index[dup]:
        first = int(df.index[(df["case_id"] == df.at[i, "case_id"])][0])
        if first != i:
            pr.bad(i, df.at[i, "case_id"], f"duplicate case_id (first seen in row {first + 2}) -> give each lesion its own case_id")


def _resolve_paths(df: pd.DataFrame, base: Path, pr: _Problems) -> None:
    """Image and mask paths absolute (relative to the manifest's folder); optional columns present."""
    for col in ("image", "mask"):
        if col in df.columns:
            resolved = []
            for i, v in df[col].items():
                try:
                    resolved.append(_resolve(v, base))
                except (ValueError, OSError, RuntimeError) as e:
                    msg = f"{col} {str(v)[:80]!r} is not a usable path ({e}) -> fix the path"
                    if isinstance(e, RuntimeError) or (isinstance(e, OSError) and e.errno == errno.ELOOP):
                        pr.bad_file(i, df.at[i, "case_id"], str(v), msg)  # a symlink loop: this row's file, not the manifest
                    else:
                        pr.bad(i, df.at[i, "case_id"], msg)
                    resolved.append(None)
            df[col] = resolved
        else:
            df[col] = None
    for col in ("mask_label", "series_uid", *SEED_COLS):
        if col not in df.columns:
            df[col] = None


def _check_rows(df: pd.DataFrame, pr: _Problems, root_p: Path | None, check_files: bool) -> None:
    """Per row: a complete numeric seed point or a mask, and files that exist inside the data root."""
    for i, row in df.iterrows():
        case = row["case_id"]
        has_seed = [row[c] is not None and str(row[c]).strip() != "" for c in SEED_COLS]
        if any(has_seed) and not all(has_seed):
            pr.bad(i, case, "seed point incomplete: give all of seed_x, seed_y, seed_z or none -> fill in the missing coordinates")
        if all(has_seed):
            try:
                seeds = [float(row[c]) for c in SEED_COLS]
                if not np.all(np.isfinite(seeds)):
                    raise ValueError
            except (TypeError, ValueError):
                pr.bad(i, case, f"seed point ({row['seed_x']}, {row['seed_y']}, {row['seed_z']}) is not numeric "
                                "-> give physical LPS coordinates in mm")
        if row["mask"] is None and not all(has_seed) and i not in pr.files:
            pr.bad(i, case, "no mask and no seed point -> give a mask file or seed_x/y/z")
        for col in ("image", "mask"):
            p = row[col]
            if p is None:
                continue
            if root_p is not None and not _inside(p, root_p):
                pr.bad(i, case, f"{col} {p} is outside the data root {root_p} -> move the file under data.root or change data.root")
            elif check_files and os.path.islink(p) and not Path(p).exists():
                pr.bad_file(i, case, p, f"{col} {p} is a broken symbolic link or a symlink loop -> point it at the image file itself")
            elif check_files and not Path(p).exists():
                pr.bad_file(i, case, p, f"{col} file not found: {p} -> fix the path (relative paths start at the manifest's folder)")
            elif check_files and not (Path(p).is_file() or Path(p).is_dir()):
                pr.bad_file(i, case, p, f"{col} {p} is not a regular file or folder (device, pipe or socket) -> point it at an image file")
    for col in SEED_COLS:
        df[col] = pd.to_numeric(df[col], errors="coerce")


def _check_values(df: pd.DataFrame, pr: _Problems, numeric_columns, binary_columns, nonnegative_columns) -> None:
    """Outcome and clinical columns: finite numbers, 0/1 where binary, >= 0 where non-negative; typed as float."""
    for col in numeric_columns + binary_columns + nonnegative_columns:
        if col not in df.columns:
            continue
        values = df[col]
        if col in binary_columns:  # true/false spelled out is common in exported tables
            values = values.map(lambda v: _BOOL_WORDS.get(str(v).strip().lower(), v) if v is not None else v)
        num = pd.to_numeric(values, errors="coerce").astype(float)
        for i in df.index[num.isna() & values.notna()]:
            if _COMMA_NUMBER.fullmatch(str(df.at[i, col])):
                pr.bad(i, df.at[i, "case_id"], f"{col} = {df.at[i, col]!r} has a comma: a decimal comma or a thousands "
                                               "separator? -> write numbers with a decimal point and no grouping (10.5, 1234)")
                continue
            pr.bad(i, df.at[i, "case_id"], f"{col} = {df.at[i, col]!r} is not a number -> use a number, or leave the cell "
                                           "empty for unknown")
        for i in df.index[num.notna() & ~np.isfinite(num)]:
            pr.bad(i, df.at[i, "case_id"], f"{col} = {df.at[i, col]!r} is not a finite number -> use a finite value, or leave "
                                           "the cell empty for unknown")
        if col in binary_columns:
            for i in df.index[num.notna() & np.isfinite(num) & ~num.isin([0, 1])]:
                pr.bad(i, df.at[i, "case_id"], f"{col} = {df.at[i, col]} must be 0 or 1 -> code it as 1 (yes/event) or 0 "
                                               "(no/censored)")
        if col in nonnegative_columns:
            for i in df.index[num.notna() & (num < 0)]:
                pr.bad(i, df.at[i, "case_id"], f"{col} = {df.at[i, col]} must not be negative -> check the value (times are "
                                               "counted from diagnosis or treatment)")
        df[col] = num


def _check_per_patient(df: pd.DataFrame, pr: _Problems, required_columns) -> None:
    """Outcomes and clinical covariates the config uses belong to the patient; other columns may be per lesion."""
    outcome_cols = [c for c in dict.fromkeys(required_columns) if c in df.columns and c not in KNOWN]
    for col in outcome_cols:
        per_patient = df.groupby("patient_id", dropna=True)[col].nunique(dropna=True)
        for pid in per_patient.index[per_patient > 1]:
            vals = sorted({str(v) for v in df.loc[df["patient_id"] == pid, col]})
            rows = [int(j) + 2 for j in df.index[df["patient_id"] == pid]]
            pr.errors.append(f"manifest {pr.name}: rows {rows} (patient {pid}): conflicting {col} values {vals} -> outcomes and "
                             "clinical values belong to the patient: give all its lesions the same value")


def _skip_file_problems(df: pd.DataFrame, pr: _Problems, modalities, pseudonymise_key) -> pd.DataFrame:
    """Rows whose files are unusable leave the manifest and join ``pr.skipped`` (with the ids they would have had)."""
    if len(pr.files) == len(df):
        raise ManifestError(f"manifest {pr.name}: no row has its files ({len(df)} row(s) left out; first: "
                            f"{next(iter(pr.files.values()))[1]})")
    keep_mod = {m.upper() for m in modalities} if modalities else None
    for i, (file, msg) in sorted(pr.files.items()):
        case, pid = str(df.at[i, "case_id"]), str(df.at[i, "patient_id"])
        if keep_mod is not None and df.at[i, "modality"] not in keep_mod:
            continue
        if pseudonymise_key and pid and pid in case:  # the same id the row would have had
            case = case.replace(pid, pseudonymise(pid, pseudonymise_key))
            msg = msg.replace(f"(case {df.at[i, 'case_id']})", f"(case {case})")
        pr.skipped.append({"case_id": case, "file": file or "", "message": msg})
    return df.drop(index=list(pr.files)).reset_index(drop=True)


def pseudonymise_key_from_env() -> str | None:
    return os.environ.get("RADAE_PSEUDO_KEY") or None
