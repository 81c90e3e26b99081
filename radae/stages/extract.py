"""extract: per-lesion feature tables - learned latents and PyRadiomics features - with provenance and a dictionary.

Reads ``preprocess/rois.parquet`` (the lesions; ROI npz for latents, lesion crops for PyRadiomics on the resampled
grid), ``ingest/cases.parquet`` (original image/mask for ``extract.radiomics.grid: original``; source hashes) and
``pretrain/model.pt``. Writes into ``extract/`` (every file atomically):

- ``latent.parquet`` / ``latent.csv`` and ``radiomics.parquet`` / ``radiomics.csv``: one row per lesion, keys
  ``case_id, patient_id`` first (see :mod:`radae.features.table`); Parquet metadata ``radae.provenance`` (the
  table's settings, versions and checkpoint hash)
- ``lesion_provenance.parquet`` / ``.csv``: one row per lesion and table - source and input file hashes,
  preprocess key, PyRadiomics' diagnostics (JSON), reader warnings (e.g. RTSTRUCT contours placed by position) -
  joinable on ``case_id``
- ``latent_patient.*`` / ``radiomics_patient.*`` with ``extract.aggregate: largest | volume_weighted_mean`` (one
  block of columns per modality, prefixed ``MR_`` etc., when the cohort has several: :mod:`radae.features.aggregate`)
- ``data_dictionary.csv``, ``provenance.json`` (sidecar, with date and paths), ``summary.json`` (counts, timings,
  lesions/s), ``ibsi_compliance.csv`` (the shipped IBSI table, :mod:`radae.features.ibsi`)
- ``partial/radiomics/*.json``: one file per extracted lesion, keyed by settings + inputs. A re-run (after a crash,
  or with ``--resume``) reads lesions back from here instead of extracting them again; ``--force`` clears it.

Tables are streamed: rows go to the writers in table order, a chunk at a time (latents as each batch is encoded,
PyRadiomics results read back from their partial files), and a writer holds at most one Parquet row group. What
stays in memory for the whole stage is the lesion index (the used columns of rois/cases, resume keys): about
1.5 KB per lesion (``benchmarks/bench_scale.py``).

Per-lesion problems (unreadable crop, empty mask, PyRadiomics refusing the ROI, non-finite latents) go to
``failures.csv`` and the lesion is left out of that table (``on_error: raise`` stops instead). Features PyRadiomics
returns as NaN stay NaN in the table and are listed in ``failures.csv`` too: never silently.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import logging
import platform
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from radae import __version__ as radae_version
from radae.config import stable_hash
from radae.util.csvsafe import to_csv_text
from radae.util.errors import ExtractError, case_message
from radae.features import aggregate as agg
from radae.features import dictionary as dct
from radae.features import handcrafted as hc
from radae.features import table as tbl
from radae.features.outcomes import write_outcomes
from radae.util.fsutil import atomic_path, atomic_write_text, replace_write_text
from radae.util.progress import progress_iter
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)

EXTRACT_VERSION = 1  # bump when the wrapper changes what a lesion's features are (invalidates partial results)
_VERSION_PACKAGES = ("radae", "pyradiomics", "torch", "numpy", "SimpleITK", "PyWavelets", "pandas", "pyarrow", "dask")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["radae"] = out.get("radae") or radae_version
    return out


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def _remove(out: Path, *names: str) -> None:
    for name in names:
        for suffix in (".parquet", ".csv"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- radiomics
def radiomics_specs(cfg, modalities, native_grid: bool = False) -> dict[str, hc.RadiomicsSpec]:
    """The validated PyRadiomics settings of each modality in ``modalities``, as ``cfg.extract.radiomics`` asks.

    ``native_grid`` (``radae features``): on ``grid: original`` PyRadiomics resamples only if the parameter file says
    so, as the ``pyradiomics`` command does, instead of to ``preprocess.spacing_mm``."""
    rcfg = cfg.extract.radiomics
    return hc.specs_for_modalities(pd.Series(modalities).astype(str).unique(), params_path=rcfg.params, grid=rcfg.grid,
                                   image_types=rcfg.image_types, spacing_mm=None if native_grid else cfg.preprocess.spacing_mm)


def radiomics_tasks(rois: pd.DataFrame, cases: pd.DataFrame, grid: str, specs: dict[str, hc.RadiomicsSpec]) -> list[hc.LesionTask]:
    """One task per lesion of rois.parquet, with its resume key (settings + inputs; no file is read here)."""
    by_case = cases.set_index("case_id").to_dict("index") if grid == "original" else {}
    tasks = []
    for r in rois.to_dict("records"):
        case, mod = str(r["case_id"]), str(r["modality"])
        spec_key = specs[mod].key if mod in specs else ""
        if grid == "resampled":
            inputs = {"preprocess_key": _text(r.get("preprocess_key"))}
            task = hc.LesionTask(case, str(r["patient_id"]), mod, _text(r.get("radiomics_image")), _text(r.get("radiomics_mask")))
        else:
            c = by_case.get(case)
            if c is None:
                raise ExtractError(f"case {case}: in preprocess/rois.parquet but not in ingest/cases.parquet -> rerun ingest and preprocess")
            inputs = {k: _text(c.get(k)) for k in ("image_sha256", "mask_sha256", "mask_label", "series_uid")}
            task = hc.LesionTask(case, str(r["patient_id"]), mod, _text(c.get("image")), _text(c.get("mask")),
                                 mask_label=inputs["mask_label"], series_uid=inputs["series_uid"],
                                 image_sha256=inputs["image_sha256"], mask_sha256=inputs["mask_sha256"])
        key = hashlib.sha256(json.dumps({"v": EXTRACT_VERSION, "spec": spec_key, "grid": grid, "case": case, "inputs": inputs},
                                        sort_keys=True).encode()).hexdigest()
        tasks.append(dataclasses.replace(task, key=key))
    return tasks


def _partial_path(folder: Path, case_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)[:80]
    return folder / f"{safe}-{hashlib.sha256(case_id.encode()).hexdigest()[:10]}.json"


def read_partial(folder: Path, task: hc.LesionTask) -> dict | None:
    """The result on disk for ``task`` if its key matches (same settings and inputs), else None."""
    try:
        res = json.loads(_partial_path(folder, task.case_id).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(res, dict) and res.get("key") == task.key and res.get("case_id") == task.case_id
            and isinstance(res.get("features"), dict)):
        return None
    res["features"] = {k: (float("nan") if v is None else float(v)) for k, v in res["features"].items()}
    return res


def save_partial(folder: Path, res: dict) -> None:
    payload = dict(res)
    payload["features"] = {k: (None if v != v else v) for k, v in res["features"].items()}  # NaN -> null (strict JSON)
    replace_write_text(_partial_path(folder, res["case_id"]), json.dumps(tbl.json_clean(payload), sort_keys=True))


#: lesion rows handed to the table writers at a time (the writers hold at most one Parquet row group)
CHUNK_ROWS = 512
#: ``lesion_provenance.parquet``: one row per lesion and feature table, what each row of that table came from
LESION_PROVENANCE_COLUMNS = {c: "text" for c in (
    "table", "case_id", "patient_id", "modality", "preprocess_key", "source_image_sha256", "source_mask_sha256",
    "input_image_sha256", "input_mask_sha256", "diagnostics", "warnings")}
LESION_PROVENANCE_KEYS = ("table", "patient_id", "case_id")


def _chunks(items, n: int = CHUNK_ROWS):
    buf = []
    for item in items:
        buf.append(item)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


class _Sources:
    """Per-case facts from the stage's inputs that provenance rows need: modality, preprocess key, source hashes."""

    def __init__(self, rois: pd.DataFrame, cases: pd.DataFrame):
        def col(df, name):
            return dict(zip(df["case_id"], map(_text, df[name]))) if name in df else {}

        self.modality, self.pkey, self.warnings = col(rois, "modality"), col(rois, "preprocess_key"), col(rois, "warnings")
        self.image, self.mask = col(cases, "image_sha256"), col(cases, "mask_sha256")

    def row(self, table: str, case: str, patient: str, **extra) -> dict:
        return {"table": table, "case_id": case, "patient_id": patient, "modality": self.modality.get(case, ""),
                "preprocess_key": self.pkey.get(case, ""), "source_image_sha256": self.image.get(case, ""),
                "source_mask_sha256": self.mask.get(case, ""), "warnings": self.warnings.get(case, ""), **extra}


def run_radiomics(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path, common: dict,
                  lesion_rows: tbl.TableWriter) -> dict:
    """PyRadiomics for every lesion (or its partial result read back), then ``radiomics.parquet`` streamed from the
    partial files in table order: only the lesions' keys and column names are held in memory."""
    ecfg = ctx.cfg.extract
    rcfg = ecfg.radiomics
    specs = radiomics_specs(ctx.cfg, rois["modality"], native_grid=bool(ctx.extra.get("radiomics_native_grid")))
    tasks = radiomics_tasks(rois, cases, rcfg.grid, specs)  # in the index's (table) order
    by_id = {t.case_id: t for t in tasks}
    partial = out / "partial" / "radiomics"
    if ctx.force and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    by_mod: dict[str, set] = {}

    def note(task: hc.LesionTask, res: dict) -> None:
        done.add(task.case_id)
        by_mod.setdefault(task.modality, set()).update(res["features"])

    for t in tasks:
        res = read_partial(partial, t)
        if res is not None:
            note(t, res)
    todo = [t for t in tasks if t.case_id not in done]
    if done:
        logger.info("extract: %d of %d lesions' PyRadiomics features read back from %s", len(done), len(tasks), partial)
    executor = "dask" if ecfg.executor == "dask" else "process"
    failed = 0
    t0 = time.perf_counter()
    for res in hc_map(todo, specs, executor, ecfg.n_jobs, ecfg.dask_address, ctx.quiet):
        if res["error"]:
            if ecfg.on_error == "raise":
                raise ExtractError(res["error"])
            ctx.fail(res["case_id"], res["error"], res["file"])
            failed += 1
            continue
        save_partial(partial, res)
        note(by_id[res["case_id"]], res)
    seconds = time.perf_counter() - t0
    summary = {"lesions": len(tasks), "extracted": len(todo) - failed, "reused": len(tasks) - len(todo), "failed": failed,
               "seconds": round(seconds, 3), "lesions_per_s": round((len(todo) - failed) / seconds, 3) if todo and seconds > 0 else None,
               "executor": executor if ecfg.n_jobs > 1 or executor == "dask" else "serial", "n_jobs": ecfg.n_jobs,
               "grid": rcfg.grid}
    if not done:
        raise ExtractError(f"extract: PyRadiomics failed for all {len(tasks)} lesions; see {ctx.stage_dir() / 'failures.csv'}")
    columns = tbl.lesion_columns(set().union(*by_mod.values()))
    feats = [c for c in columns if c not in tbl.KEYS]
    not_computed = {m: sorted(set(feats) - cols) for m, cols in sorted(by_mod.items()) if set(feats) - cols}
    for m, cols in not_computed.items():
        logger.warning("extract: %d PyRadiomics columns are not computed for %s lesions (their parameter file differs); "
                       "they are empty for those rows", len(cols), m)
    prov = {
        "table": "radiomics",
        "grid": rcfg.grid,
        "feature_extractor": "PyRadiomics RadiomicsFeatureExtractor",
        "parameters": {m: {"file": Path(s.source).name, "sha256": s.source_sha256, "key": s.key, "params": s.params}
                       for m, s in specs.items()},
        "columns_not_computed": not_computed,
        "lesion_provenance": "lesion_provenance.parquet",
    }
    src = _Sources(rois, cases)
    with tbl.TableWriter(out / "radiomics.parquet", columns, {**common, **prov}, sort_keys=("patient_id", "case_id")) as w:
        for chunk in _chunks(t for t in tasks if t.case_id in done):
            rows, prov_rows = [], []
            for t in chunk:
                res = read_partial(partial, t)
                if res is None:
                    raise ExtractError(case_message(t.case_id, _partial_path(partial, t.case_id),
                                                    "the lesion's PyRadiomics result changed or vanished while the table was written",
                                                    "run extract again (one extract per run folder at a time)"))
                nan = res.get("nan_features") or []
                if nan:
                    ctx.fail(t.case_id, case_message(t.case_id, None, f"PyRadiomics returned NaN for {len(nan)} feature(s) "
                                                     f"({', '.join(nan[:5])}{', ...' if len(nan) > 5 else ''}); kept as NaN in radiomics.parquet",
                                                     "check the ROI size and the parameter file"), t.mask)
                rows.append({"case_id": t.case_id, "patient_id": t.patient_id, **res["features"]})
                prov_rows.append(src.row("radiomics", t.case_id, t.patient_id,
                                         input_image_sha256=_text(res["input_sha256"].get("image")),
                                         input_mask_sha256=_text(res["input_sha256"].get("mask")),
                                         diagnostics=json.dumps(tbl.json_clean(res.get("diagnostics") or {}), sort_keys=True)))
            w.write(pd.DataFrame(rows))
            lesion_rows.write(pd.DataFrame(prov_rows))
    return {"provenance": {**prov, "n_lesions": w.rows, "n_failed": failed}, "summary": summary, "specs": specs,
            "params_paths": {m: s.source for m, s in specs.items()}, "columns": list(columns)}


def hc_map(tasks, specs, executor, n_jobs, address, quiet):
    """PyRadiomics over ``tasks`` with the configured executor (see :func:`radae.features.parallel.map_tasks`)."""
    from radae.features.parallel import map_tasks

    return map_tasks(hc.run_lesion, tasks, specs, executor=executor, n_jobs=n_jobs, dask_address=address,
                     desc="PyRadiomics", quiet=quiet)


# ----------------------------------------------------------------------------- latent
HEAD_PREFIXES = {"pooled": "pooled_l*_{avg,max,mask}_### (feature set learned_pooled)",
                 "anomaly": "anomaly_* (feature set anomaly)",
                 "random": "random_latent_### / random_pooled_* (feature sets random_encoder / random_pooled; untrained, seeded)"}


def _records(df: pd.DataFrame, n: int = CHUNK_ROWS):
    """``df``'s rows as dicts, a slice at a time (not a list of all of them)."""
    for start in range(0, len(df), n):
        yield from df.iloc[start:start + n].to_dict("records")


def run_latent(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path, common: dict,
               lesion_rows: tbl.TableWriter) -> dict:
    """Encoder latents batch by batch in table order, each batch appended to ``latent.parquet`` as it comes."""
    from radae.features import latent as lat

    lcfg = ctx.cfg.extract.latent
    model, meta, device = lat.load_model(ctx.run_dir, lcfg)
    columns = tbl.lesion_columns(lat.feature_columns(meta, lcfg.heads))
    prov = {
        "table": "latent",
        "checkpoint_sha256": meta["sha256"],
        "weights_sha256": lat.weights_sha256(model, meta),
        "model": {k: meta[k] for k in ("kind", "latent_dim", "in_channels", "step", "config_hash", "n_params")}
        | {"roi_size_zyx": list(meta["roi_size_zyx"])},
        "inference": {"device": device.type, "batch_size": lcfg.batch_size, "tta_flips": lcfg.tta_flips,
                      "precision": lcfg.precision, "channels_last": lcfg.channels_last},
        "heads": {"bottleneck": "latent_###", **{h: HEAD_PREFIXES[h] for h in lcfg.heads}},
        "lesion_provenance": "lesion_provenance.parquet",
    }
    src = _Sources(rois, cases)
    failed = 0
    t0 = time.perf_counter()
    rows = progress_iter(_records(rois), total=len(rois), desc="latents", quiet=ctx.quiet)
    with tbl.TableWriter(out / "latent.parquet", columns, {**common, **prov}, sort_keys=("patient_id", "case_id")) as w:
        for table, failures in lat.iter_latents(rows, model, meta, lcfg, device):
            for case, msg, file in failures:
                if ctx.cfg.extract.on_error == "raise":
                    raise ExtractError(msg)
                ctx.fail(case, msg, file)
                failed += 1
            w.write(table)
            lesion_rows.write(pd.DataFrame([src.row("latent", c, p) for c, p in zip(table["case_id"], table["patient_id"])],
                                           columns=list(LESION_PROVENANCE_COLUMNS)))
        if w.rows == 0:
            raise ExtractError(f"extract: no latent features for any of {len(rois)} lesions; see {ctx.stage_dir() / 'failures.csv'}")
    seconds = time.perf_counter() - t0
    summary = {"lesions": len(rois), "extracted": w.rows, "failed": failed, "seconds": round(seconds, 3),
               "lesions_per_s": round(w.rows / seconds, 3) if seconds > 0 else None, "device": device.type}
    return {"provenance": {**prov, "n_lesions": w.rows, "n_failed": failed}, "summary": summary, "meta": meta,
            "columns": list(columns)}


# ----------------------------------------------------------------------------- stage
def settings_hash(cfg) -> str:
    """Hash of what determines the feature values: seed and the data, preprocess, pretrain and extract sections.

    Unlike ``PipelineConfig.hash()`` it leaves out the run's name and folder, so the same settings run in two
    folders give byte-identical tables.
    """
    return stable_hash({"seed": cfg.seed, **{s: cfg.section_hash(s) for s in ("data", "preprocess", "pretrain", "extract")}})


def _common_provenance(ctx: RunContext) -> dict:
    """Provenance shared by every table (path- and date-free: it goes into the Parquet metadata)."""
    cfg = ctx.cfg
    return {"radae_version": radae_version, "versions": versions(), "settings_hash": settings_hash(cfg),
            "extract_config_hash": cfg.section_hash("extract"), "preprocess_config_hash": cfg.section_hash("preprocess"),
            "seed": cfg.seed}


#: the columns of the stage's inputs it uses (only these are read: the index is held for the whole stage)
ROI_COLUMNS = ("case_id", "patient_id", "modality", "roi_path", "radiomics_image", "radiomics_mask", "preprocess_key",
               "lesion_volume_ml", "warnings")
CASE_COLUMNS = ("case_id", "patient_id", "image", "mask", "image_sha256", "mask_sha256", "mask_label", "series_uid")


def _read(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ExtractError(case_message(None, path, f"{what} not found", "run the earlier stages first"))
    present = set(pq.read_schema(path).names)
    df = pd.read_parquet(path, columns=[c for c in columns if c in present])
    for k in ("case_id", "patient_id"):
        if k in df.columns:
            df[k] = df[k].astype(str)
    return df


def _unit_text(specs: dict[str, hc.RadiomicsSpec]) -> str:
    return dct.intensity_unit({m: bool(s.settings.get("normalize")) for m, s in specs.items()})


def _wavelet_name(specs: dict[str, hc.RadiomicsSpec]) -> str:
    names = {str((s.params.get("imageType", {}).get("Wavelet") or {}).get("wavelet") or s.settings.get("wavelet") or "coif1")
             for s in specs.values()}
    return " / ".join(sorted(names))


def run(ctx: RunContext) -> None:
    ecfg = ctx.cfg.extract
    if not ecfg.latent.enabled and not ecfg.radiomics.enabled:
        raise ExtractError("extract: both extract.latent and extract.radiomics are disabled -> enable one or drop "
                           "'extract' from stages")
    out = ctx.stage_dir()
    rois = _read(ctx.run_dir / "preprocess" / "rois.parquet", "ROI index", ROI_COLUMNS)
    dup = rois["case_id"].duplicated()
    if dup.any():
        raise ExtractError(case_message(rois["case_id"][dup].iloc[0], ctx.run_dir / "preprocess" / "rois.parquet",
                                        "appears twice in the ROI index (one row per lesion)", "rerun preprocess with --force"))
    rois = rois.sort_values(["patient_id", "case_id"], kind="mergesort").reset_index(drop=True)  # table order: every writer streams in it
    cases = _read(ctx.run_dir / "ingest" / "cases.parquet", "case table", CASE_COLUMNS)
    write_tables(ctx, rois, cases, out)


def write_tables(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path) -> dict:
    """Every output of the stage into ``out`` from the lesion index ``rois`` (table order) and ``cases``; also the
    body of ``radae features --manifest`` (:mod:`radae.features.standalone`). Returns the summary."""
    ecfg = ctx.cfg.extract
    common = _common_provenance(ctx)
    summary: dict = {"aggregate": ecfg.aggregate}
    sidecar: dict = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **common,
                     "config_hash": ctx.cfg.hash(), "run_dir": str(ctx.run_dir.resolve()), "tables": {}}
    volume = rois.set_index("case_id")["lesion_volume_ml"] if "lesion_volume_ml" in rois else pd.Series(dtype=float)
    modality = rois.set_index("case_id")["modality"].astype(str)
    modalities = sorted(modality.unique())
    dictionary_parts = []

    def patients(name: str, columns: list[str]) -> None:
        if ecfg.aggregate == "all":
            _remove(out, f"{name}_patient")
            return
        feats = [c for c in columns if c not in tbl.KEYS]
        pcols = {"patient_id": "text", "n_lesions": "int", "case_ids": "text", **{c: "float" for c in feats}}
        lesions = tbl.iter_table(out / f"{name}.parquet")
        chunks = tbl.aggregate_patient_chunks(lesions, volume, ecfg.aggregate)
        if len(modalities) > 1:  # never one column for MR rows of some patients and PET rows of others
            pcols = agg.modality_columns(feats, modalities)
            chunks = agg.aggregate_by_modality(lesions, volume, modality, ecfg.aggregate, modalities)
        with tbl.TableWriter(out / f"{name}_patient.parquet", pcols, sort_keys=("patient_id",),
                             provenance={**common, "table": f"{name}_patient", "aggregate": ecfg.aggregate,
                                         "from": f"{name}.parquet", "modalities": modalities}) as w:
            for chunk in chunks:
                w.write(chunk)

    with tbl.TableWriter(out / "lesion_provenance.parquet", LESION_PROVENANCE_COLUMNS, {**common, "table": "lesion_provenance"},
                         sort_keys=LESION_PROVENANCE_KEYS) as lesion_rows:
        if ecfg.latent.enabled:
            info = run_latent(ctx, rois, cases, out, common, lesion_rows)
            patients("latent", info["columns"])
            summary["latent"] = info["summary"]
            sidecar["checkpoint_sha256"] = info["meta"]["sha256"]
            sidecar["latent"] = {"checkpoint": info["meta"]["path"], "checkpoint_sha256": info["meta"]["sha256"],
                                 "model_kind": info["meta"]["kind"], "latent_dim": info["meta"]["latent_dim"],
                                 "tta_flips": ecfg.latent.tta_flips, "device": info["summary"]["device"],
                                 "lesions": info["summary"]["extracted"], "failed": info["summary"]["failed"]}
            sidecar["tables"]["latent"] = info["provenance"]
            dictionary_parts.append(dct.data_dictionary(latent_columns=[c for c in info["columns"] if c.startswith("latent_")],
                                                        latent_meta=info["meta"]))
            head_cols = [c for c in info["columns"] if c not in tbl.KEYS and not c.startswith("latent_")]
            if head_cols:
                from radae.features.heads import dictionary_rows

                dictionary_parts.append(pd.DataFrame(dictionary_rows(head_cols, info["meta"]), columns=dct.DICTIONARY_COLUMNS))
        else:
            _remove(out, "latent", "latent_patient")

        if ecfg.radiomics.enabled:
            info = run_radiomics(ctx, rois, cases, out, common, lesion_rows)
            patients("radiomics", info["columns"])
            summary["radiomics"] = info["summary"]
            sidecar["radiomics"] = {"grid": ecfg.radiomics.grid, "pyradiomics": hc.pyradiomics_version(),
                                    "image_types": ", ".join(sorted({t for s in info["specs"].values() for t in s.image_types})),
                                    "parameter_files": ", ".join(f"{m}: {p}" for m, p in sorted(info["params_paths"].items())),
                                    "executor": info["summary"]["executor"], "n_jobs": ecfg.n_jobs,
                                    "lesions": info["provenance"]["n_lesions"], "failed": info["summary"]["failed"]}
            sidecar["tables"]["radiomics"] = info["provenance"]
            dictionary_parts.append(dct.data_dictionary(radiomics_columns=info["columns"], unit=_unit_text(info["specs"]),
                                                        wavelet=_wavelet_name(info["specs"])))
            _copy_ibsi(out)
        else:
            _remove(out, "radiomics", "radiomics_patient")
            (out / "ibsi_compliance.csv").unlink(missing_ok=True)
    sidecar["lesion_provenance"] = {"file": "lesion_provenance.parquet", "rows": lesion_rows.rows,
                                    "columns": list(LESION_PROVENANCE_COLUMNS)}

    dic = pd.concat(dictionary_parts, ignore_index=True)
    atomic_write_text(out / "data_dictionary.csv", to_csv_text(dic, lineterminator="\n"))
    write_outcomes(ctx.run_dir / "ingest" / "cases.parquet", out)  # outcomes + covariates beside the features, ids as text
    atomic_write_text(out / "provenance.json", json.dumps(tbl.json_clean(sidecar), indent=1, sort_keys=False, default=str))
    atomic_write_text(out / "summary.json", json.dumps(tbl.json_clean(summary), indent=1))
    logger.info("extract: %s", "; ".join(f"{k}: {v['extracted']}/{v['lesions']} lesions ({_rate(v['lesions_per_s'])} lesions/s)"
                                         for k, v in summary.items() if isinstance(v, dict)))
    return summary


def _rate(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _copy_ibsi(out: Path) -> None:
    """The shipped IBSI compliance table (generated by ``python -m radae.features.ibsi``) next to the features."""
    from radae.features.ibsi import shipped_table_path

    src = shipped_table_path()
    if not src.is_file():
        logger.warning("extract: %s is missing; no IBSI compliance table in this run", src)
        return
    with atomic_path(out / "ibsi_compliance.csv", suffix=".csv") as tmp:
        shutil.copyfile(src, tmp)
