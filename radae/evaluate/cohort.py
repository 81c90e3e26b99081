"""The benchmark cohort: the analysis rows and every feature set on exactly these rows.

Reads ``ingest/cases.parquet`` (outcomes, clinical columns), ``extract/latent.parquet`` and
``extract/radiomics.parquet`` (features, keyed by ``case_id``/``patient_id``) and
``preprocess/rois.parquet`` (lesion volume, ROI files for voxel PCA). Every feature set is evaluated on
the *same* rows so comparisons are paired. Rows are lesions grouped by patient (``extract.aggregate: all``)
or one per patient (``largest`` / ``volume_weighted_mean``). If the manifest marks evaluation patients
(``is_evaluation``), only they are benchmarked (the encoder never saw them); otherwise all patients are.

Feature sets: ``learned`` (latent_###), ``handcrafted`` (PyRadiomics-named columns; ``diagnostics_*``
left out), ``combined``, ``volume`` (log lesion volume), ``voxel_pca``, ``clinical``, the feature heads of
:data:`HEAD_SETS`; with ``clinical`` also ``clinical+<set>`` for every other set but voxel_pca (clinical
columns forced into the model).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pandas as pd

from radae.config import BenchmarkConfig, PipelineConfig
from radae.evaluate import baselines, harmonise
from radae.runfolder import OnFailure
from radae.runfolder import CASES, KEYS, LATENT_RE, ROIS, read_table
from radae.util.errors import BenchmarkError, case_message
from radae.util.values import bool_column

logger = logging.getLogger(__name__)

# feature sets read from latent.parquet besides ``learned``: set -> column pattern (radae.features.heads)
HEAD_SETS = {"learned_pooled": re.compile(r"^pooled_l\d+_(avg|max|mask)_\d+$"), "anomaly": re.compile(r"^anomaly_\w+$"),
             "random_encoder": re.compile(r"^random_latent_\d+$"),
             "random_pooled": re.compile(r"^random_pooled_l\d+_(avg|max|mask)_\d+$")}
# PyRadiomics naming: <image type>_<feature class>_<feature>, e.g. original_glcm_Contrast, wavelet-LLH_firstorder_Mean
RADIOMICS_RE = re.compile(r"^[A-Za-z0-9.\-]+_(shape|shape2D|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_[A-Za-z0-9]+$")
ROBUSTNESS_SETS = ("learned", "handcrafted")

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


def read_keyed_table(path: Path, what: str) -> pd.DataFrame:
    """A run-folder table with text ``case_id``/``patient_id`` and one row per lesion, or BenchmarkError."""
    df = read_table(path, what, BenchmarkError, required=())
    for key in KEYS:
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


def _needed_tables(sets: tuple[str, ...]) -> set[str]:
    need = set()
    for s in sets:
        if s in ("learned", "combined") or s in HEAD_SETS:
            need.add("latent")
        if s in ("handcrafted", "combined"):
            need.add("radiomics")
    return need


def _read_inputs(run_dir: Path, bcfg: BenchmarkConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(cases, ROI index, feature tables by key), keys checked against the cases."""
    cases = read_keyed_table(run_dir / CASES, "cases table")
    rois = read_keyed_table(run_dir / ROIS, "ROI index")
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
        tables[key] = read_keyed_table(path, f"{key} feature table")
        check_keys(tables[key], cases, f"extract/{key}.parquet")
    return cases, rois, tables


def _paired_lesions(cases: pd.DataFrame, rois: pd.DataFrame, tables: dict[str, pd.DataFrame], fail: OnFailure) -> pd.DataFrame:
    """The cases present in every needed table (a lesion missing anywhere is left out of every set and reported)."""
    present = set(cases["case_id"])
    sources = {"preprocess/rois.parquet": rois, **{f"extract/{k}.parquet": t for k, t in tables.items()}}
    for name, t in sources.items():  # each missing lesion is reported once, for the first table that lacks it
        missing = sorted(present - set(t["case_id"]))
        for cid in missing:
            fail(cid, f"not in {name} (failed upstream, see that stage's failures.csv); left out of every feature set so comparisons stay paired", name)
        present -= set(missing)
    if not present:
        raise BenchmarkError("no lesion is present in every feature table -> check extract/failures.csv")
    return cases[cases["case_id"].isin(present)].sort_values(["patient_id", "case_id"]).reset_index(drop=True)


def _feature_frames(lesions: pd.DataFrame, rois: pd.DataFrame, tables: dict[str, pd.DataFrame], run_dir: Path,
                    bcfg: BenchmarkConfig) -> dict[str, pd.DataFrame]:
    """Per part (learned, handcrafted, heads, volume, voxel_pca, clinical): its columns on the lesion rows."""
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
    frames["volume"] = baselines.volume_features(r).drop(columns="case_id")
    if "voxel_pca" in bcfg.feature_sets:
        frames["voxel_pca"] = baselines.voxel_features(r, run_dir, bcfg.voxel_grid_vox).drop(columns="case_id")
    if bcfg.clinical:
        frames["clinical"] = baselines.clinical_features(lesions, bcfg.clinical).drop(columns="case_id")
    return frames


def load_cohort(run_dir: Path, cfg: PipelineConfig, on_failure: OnFailure | None = None) -> Cohort:
    """Read the run folder's tables, check keys, align rows, aggregate per patient if configured."""
    bcfg = cfg.benchmark
    fail = on_failure or (lambda c, m, f: logger.warning("case %s: %s", c, m))
    cases, rois, tables = _read_inputs(run_dir, bcfg)

    # keep the evaluation patients only, if the manifest designates any
    cohort = "all"
    if bcfg.external is None and "is_evaluation" in cases.columns and bool_column(cases["is_evaluation"]).any():
        cases = cases[bool_column(cases["is_evaluation"])]
        cohort = "evaluation_patients"

    lesions = _paired_lesions(cases, rois, tables, fail)
    frames = _feature_frames(lesions, rois, tables, run_dir, bcfg)
    vol = frames["volume"]

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
    outcome_cols = [c for c in bcfg.outcome_columns() if c in lesions.columns] + list(bcfg.clinical)
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
        for name in bcfg.feature_sets if bcfg.clinical_with is None else bcfg.clinical_with:
            if name not in ("clinical", "voxel_pca"):
                sets[f"clinical+{name}"] = make(f"clinical+{name}", ["clinical"] + parts[name])
    for fs in sets.values():
        allnan = np.isnan(fs.X).all(axis=0)
        if allnan.all():
            raise BenchmarkError(f"feature set {fs.name}: every column is missing for every row -> check the feature table")
    return sets


def set_present(cohort: Cohort, part: str) -> bool:
    """Whether some feature set of the cohort holds columns of ``part`` (a robustness-study set)."""
    return any(st == part for fs in cohort.sets.values() for st in fs.column_study)


def lesion_frame(run_dir: Path, key: str, cohort: Cohort, pattern: re.Pattern) -> pd.DataFrame:
    """``extract/<key>.parquet``'s columns matching ``pattern`` on the cohort's lesions (index case_id), numeric."""
    t = read_keyed_table(run_dir / "extract" / f"{key}.parquet", f"{key} feature table").set_index("case_id")
    t = t.loc[cohort.lesions["case_id"].to_numpy()]
    cols = [c for c in t.columns if pattern.match(str(c))]
    return t[cols].apply(pd.to_numeric, errors="coerce")
