"""Run the extractors over a lesion index and write every output of the extract stage (:mod:`radae.stages.extract`).

:func:`write_tables` is the body of the stage and of ``radae features --manifest`` (:mod:`radae.features.standalone`).
Tables are streamed: rows go to the writers in table order, :data:`CHUNK_ROWS` at a time (latents as each batch is
encoded, PyRadiomics results read back from their partial files, :mod:`radae.features.tasks`), and a writer holds
at most one Parquet row group.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from radae.features import aggregate as agg
from radae.features import dictionary as dct
from radae.features import handcrafted as hc
from radae.features import provenance as prv
from radae.features import table as tbl
from radae.features.outcomes import write_outcomes
from radae.features.tasks import partial_path, radiomics_specs, radiomics_tasks, read_partial, save_partial
from radae.runfolder import RunContext, is_latent_column
from radae.util.csvsafe import to_csv_text
from radae.util.errors import ExtractError, case_message
from radae.util.fsutil import atomic_path, atomic_write_text
from radae.util.progress import progress_iter
from radae.util.values import as_text, json_clean

logger = logging.getLogger(__name__)

#: lesion rows handed to the table writers at a time (the writers hold at most one Parquet row group)
CHUNK_ROWS = 512


def _remove(out: Path, *names: str) -> None:
    for name in names:
        for suffix in (".parquet", ".csv"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)


def _chunks(items, n: int | None = None):
    n = n or CHUNK_ROWS
    buf = []
    for item in items:
        buf.append(item)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _records(df: pd.DataFrame, n: int | None = None):
    """``df``'s rows as dicts, a slice at a time (not a list of all of them)."""
    n = n or CHUNK_ROWS
    for start in range(0, len(df), n):
        yield from df.iloc[start:start + n].to_dict("records")


# ----------------------------------------------------------------------------- radiomics
def hc_map(tasks, specs, executor, n_jobs, address, quiet):
    """PyRadiomics over ``tasks`` with the configured executor (see :func:`radae.features.parallel.map_tasks`)."""
    from radae.features.parallel import map_tasks

    return map_tasks(hc.run_lesion, tasks, specs, executor=executor, n_jobs=n_jobs, dask_address=address,
                     desc="PyRadiomics", quiet=quiet)


def _extract_missing(ctx: RunContext, tasks: list[hc.LesionTask], specs: dict,
                     partial: Path) -> tuple[dict, set[str], dict[str, set]]:
    """Read back every lesion's partial result whose key matches, run PyRadiomics for the others (saving each).

    Returns the summary, the case ids with a result on disk and ``{modality: feature names}`` of those lesions."""
    ecfg = ctx.cfg.extract
    by_id = {t.case_id: t for t in tasks}
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
    pre = ctx.extra.get("radiomics_prefetch")
    t0 = time.perf_counter() if pre is None else pre.started  # radae features: workers started before ingest (features.prefetch)
    if pre is None:
        results = hc_map(todo, specs, executor, ecfg.n_jobs, ecfg.dask_address, ctx.quiet)
    else:
        rest = lambda tasks: hc_map(tasks, specs, executor, ecfg.n_jobs, ecfg.dask_address, True)  # noqa: E731
        results = progress_iter(pre.results(todo, specs, rest), total=len(todo), desc="PyRadiomics", quiet=ctx.quiet)
    for res in results:
        if res["error"]:
            if ctx.cfg.on_error == "raise":
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
               "grid": ecfg.radiomics.grid}
    return summary, done, by_mod


def _radiomics_rows(ctx: RunContext, chunk: list[hc.LesionTask], partial: Path, src: prv.LesionSources):
    """The table rows and lesion-provenance rows of ``chunk``, read back from the partial files."""
    rows, prov_rows = [], []
    for t in chunk:
        res = read_partial(partial, t)
        if res is None:
            raise ExtractError(case_message(t.case_id, partial_path(partial, t.case_id),
                                            "the lesion's PyRadiomics result changed or vanished while the table was written",
                                            "run extract again (one extract per run folder at a time)"))
        nan = res.get("nan_features") or []
        if nan:
            ctx.fail(t.case_id, case_message(t.case_id, None, f"PyRadiomics returned NaN for {len(nan)} feature(s) "
                                             f"({', '.join(nan[:5])}{', ...' if len(nan) > 5 else ''}); kept as NaN in radiomics.parquet",
                                             "check the ROI size and the parameter file"), t.mask)
        rows.append({"case_id": t.case_id, "patient_id": t.patient_id, **res["features"]})
        prov_rows.append(src.row("radiomics", t.case_id, t.patient_id,
                                 input_image_sha256=as_text(res["input_sha256"].get("image")),
                                 input_mask_sha256=as_text(res["input_sha256"].get("mask")),
                                 diagnostics=json.dumps(json_clean(res.get("diagnostics") or {}), sort_keys=True)))
    return rows, prov_rows


def run_radiomics(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path, common: dict,
                  lesion_rows: tbl.TableWriter) -> dict:
    """PyRadiomics for every lesion (or its partial result read back), then ``radiomics.parquet`` streamed from the
    partial files in table order: only the lesions' keys and column names are held in memory."""
    rcfg = ctx.cfg.extract.radiomics
    specs = radiomics_specs(ctx.cfg, rois["modality"], native_grid=bool(ctx.extra.get("radiomics_native_grid")))
    tasks = radiomics_tasks(rois, cases, rcfg.grid, specs)  # in the index's (table) order
    partial = out / "partial" / "radiomics"
    if ctx.force and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    summary, done, by_mod = _extract_missing(ctx, tasks, specs, partial)
    if not done:
        raise ExtractError(f"extract: PyRadiomics failed for all {len(tasks)} lesions; see {ctx.stage_dir() / 'failures.csv'}")
    columns = tbl.lesion_columns(set().union(*by_mod.values()))
    feats = [c for c in columns if c not in tbl.KEYS]
    not_computed = {m: sorted(set(feats) - cols) for m, cols in sorted(by_mod.items()) if set(feats) - cols}
    for m, cols in not_computed.items():
        logger.warning("extract: %d PyRadiomics columns are not computed for %s lesions (their parameter file differs); "
                       "they are empty for those rows", len(cols), m)
    prov = prv.radiomics_provenance(rcfg.grid, specs, not_computed)
    src = prv.LesionSources(rois, cases)
    with tbl.TableWriter(out / "radiomics.parquet", columns, {**common, **prov}, sort_keys=("patient_id", "case_id")) as w:
        for chunk in _chunks(t for t in tasks if t.case_id in done):
            rows, prov_rows = _radiomics_rows(ctx, chunk, partial, src)
            w.write(pd.DataFrame(rows))
            lesion_rows.write(pd.DataFrame(prov_rows))
    return {"provenance": {**prov, "n_lesions": w.rows, "n_failed": summary["failed"]}, "summary": summary,
            "specs": specs, "params_paths": {m: s.source for m, s in specs.items()}, "columns": list(columns)}


# ----------------------------------------------------------------------------- latent
def run_latent(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path, common: dict,
               lesion_rows: tbl.TableWriter) -> dict:
    """Encoder latents batch by batch in table order, each batch appended to ``latent.parquet`` as it comes."""
    from radae.features import latent as lat

    lcfg = ctx.cfg.extract.latent
    model, meta, device = lat.load_model(ctx.run_dir, lcfg)
    columns = tbl.lesion_columns(lat.feature_columns(meta, lcfg.heads))
    prov = prv.latent_provenance(meta, lat.weights_sha256(model, meta), lcfg, device.type)
    src = prv.LesionSources(rois, cases)
    failed = 0
    t0 = time.perf_counter()
    rows = progress_iter(_records(rois), total=len(rois), desc="latents", quiet=ctx.quiet)
    with tbl.TableWriter(out / "latent.parquet", columns, {**common, **prov}, sort_keys=("patient_id", "case_id")) as w:
        for table, failures in lat.iter_latents(rows, model, meta, lcfg, device):
            for case, msg, file in failures:
                if ctx.cfg.on_error == "raise":
                    raise ExtractError(msg)
                ctx.fail(case, msg, file)
                failed += 1
            w.write(table)
            lesion_rows.write(pd.DataFrame([src.row("latent", c, p) for c, p in zip(table["case_id"], table["patient_id"])],
                                           columns=list(prv.LESION_PROVENANCE_COLUMNS)))
        if w.rows == 0:
            raise ExtractError(f"extract: no latent features for any of {len(rois)} lesions; see {ctx.stage_dir() / 'failures.csv'}")
    seconds = time.perf_counter() - t0
    summary = {"lesions": len(rois), "extracted": w.rows, "failed": failed, "seconds": round(seconds, 3),
               "lesions_per_s": round(w.rows / seconds, 3) if seconds > 0 else None, "device": device.type}
    return {"provenance": {**prov, "n_lesions": w.rows, "n_failed": failed}, "summary": summary, "meta": meta,
            "columns": list(columns)}


# ----------------------------------------------------------------------------- every output
def _unit_text(specs: dict[str, hc.RadiomicsSpec]) -> str:
    return dct.intensity_unit({m: bool(s.settings.get("normalize")) for m, s in specs.items()})


def _wavelet_name(specs: dict[str, hc.RadiomicsSpec]) -> str:
    names = {str((s.params.get("imageType", {}).get("Wavelet") or {}).get("wavelet") or s.settings.get("wavelet") or "coif1")
             for s in specs.values()}
    return " / ".join(sorted(names))


def _patient_table(out: Path, name: str, columns: list[str], how: str, common: dict, rois: pd.DataFrame) -> None:
    """``<name>_patient.*`` aggregated from the written ``<name>.parquet`` (``how``: ``extract.aggregate``)."""
    if how == "all":
        _remove(out, f"{name}_patient")
        return
    volume = rois.set_index("case_id")["lesion_volume_ml"] if "lesion_volume_ml" in rois else pd.Series(dtype=float)
    modality = rois.set_index("case_id")["modality"].astype(str)
    modalities = sorted(modality.unique())
    feats = [c for c in columns if c not in tbl.KEYS]
    pcols = {"patient_id": "text", "n_lesions": "int", "case_ids": "text", **{c: "float" for c in feats}}
    lesions = tbl.iter_table(out / f"{name}.parquet")
    chunks = tbl.aggregate_patient_chunks(lesions, volume, how)
    if len(modalities) > 1:  # never one column for MR rows of some patients and PET rows of others
        pcols = agg.modality_columns(feats, modalities)
        chunks = agg.aggregate_by_modality(lesions, volume, modality, how, modalities)
    with tbl.TableWriter(out / f"{name}_patient.parquet", pcols, sort_keys=("patient_id",),
                         provenance={**common, "table": f"{name}_patient", "aggregate": how,
                                     "from": f"{name}.parquet", "modalities": modalities}) as w:
        for chunk in chunks:
            w.write(chunk)


def _latent_outputs(info: dict, ecfg, sidecar: dict) -> list[pd.DataFrame]:
    """The latent table's sidecar entries (into ``sidecar``) and its data dictionary parts."""
    meta = info["meta"]
    sidecar["checkpoint_sha256"] = meta["sha256"]
    sidecar["latent"] = {"checkpoint": meta["path"], "checkpoint_sha256": meta["sha256"],
                         "model_kind": meta["kind"], "latent_dim": meta["latent_dim"],
                         "tta_flips": ecfg.latent.tta_flips, "device": info["summary"]["device"],
                         "lesions": info["summary"]["extracted"], "failed": info["summary"]["failed"]}
    sidecar["tables"]["latent"] = info["provenance"]
    parts = [dct.data_dictionary(latent_columns=[c for c in info["columns"] if is_latent_column(c)], latent_meta=meta)]
    head_cols = [c for c in info["columns"] if c not in tbl.KEYS and not is_latent_column(c)]
    if head_cols:
        from radae.features.heads import dictionary_rows

        parts.append(pd.DataFrame(dictionary_rows(head_cols, meta), columns=dct.DICTIONARY_COLUMNS))
    return parts


def _radiomics_outputs(info: dict, ecfg, sidecar: dict) -> list[pd.DataFrame]:
    """The PyRadiomics table's sidecar entries (into ``sidecar``) and its data dictionary part."""
    specs = info["specs"]
    sidecar["radiomics"] = {"grid": ecfg.radiomics.grid, "pyradiomics": hc.pyradiomics_version(),
                            "image_types": ", ".join(sorted({t for s in specs.values() for t in s.image_types})),
                            "parameter_files": ", ".join(f"{m}: {p}" for m, p in sorted(info["params_paths"].items())),
                            "executor": info["summary"]["executor"], "n_jobs": ecfg.n_jobs,
                            "lesions": info["provenance"]["n_lesions"], "failed": info["summary"]["failed"]}
    sidecar["tables"]["radiomics"] = info["provenance"]
    return [dct.data_dictionary(radiomics_columns=info["columns"], unit=_unit_text(specs), wavelet=_wavelet_name(specs))]


def write_tables(ctx: RunContext, rois: pd.DataFrame, cases: pd.DataFrame, out: Path) -> dict:
    """Every output of the stage into ``out`` from the lesion index ``rois`` (table order) and ``cases``; also the
    body of ``radae features --manifest`` (:mod:`radae.features.standalone`). Returns the summary."""
    ecfg = ctx.cfg.extract
    common = prv.common_provenance(ctx.cfg)
    summary: dict = {"aggregate": ecfg.aggregate}
    sidecar: dict = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **common,
                     "config_hash": ctx.cfg.hash(), "run_dir": str(ctx.run_dir.resolve()), "tables": {}}
    dictionary_parts = []
    with tbl.TableWriter(out / "lesion_provenance.parquet", prv.LESION_PROVENANCE_COLUMNS,
                         {**common, "table": "lesion_provenance"}, sort_keys=prv.LESION_PROVENANCE_KEYS) as lesion_rows:
        if ecfg.latent.enabled:
            info = run_latent(ctx, rois, cases, out, common, lesion_rows)
            _patient_table(out, "latent", info["columns"], ecfg.aggregate, common, rois)
            summary["latent"] = info["summary"]
            dictionary_parts += _latent_outputs(info, ecfg, sidecar)
        else:
            _remove(out, "latent", "latent_patient")
        if ecfg.radiomics.enabled:
            info = run_radiomics(ctx, rois, cases, out, common, lesion_rows)
            _patient_table(out, "radiomics", info["columns"], ecfg.aggregate, common, rois)
            summary["radiomics"] = info["summary"]
            dictionary_parts += _radiomics_outputs(info, ecfg, sidecar)
            _copy_ibsi(out)
        else:
            _remove(out, "radiomics", "radiomics_patient")
            (out / "ibsi_compliance.csv").unlink(missing_ok=True)
    sidecar["lesion_provenance"] = {"file": "lesion_provenance.parquet", "rows": lesion_rows.rows,
                                    "columns": list(prv.LESION_PROVENANCE_COLUMNS)}

    dic = pd.concat(dictionary_parts, ignore_index=True)
    atomic_write_text(out / "data_dictionary.csv", to_csv_text(dic, lineterminator="\n"))
    write_outcomes(ctx.run_dir / "ingest" / "cases.parquet", out)  # outcomes + covariates beside the features, ids as text
    atomic_write_text(out / "provenance.json", json.dumps(json_clean(sidecar), indent=1, sort_keys=False, default=str))
    atomic_write_text(out / "summary.json", json.dumps(json_clean(summary), indent=1))
    logger.info("extract: %s", "; ".join(f"{k}: {v['extracted']}/{v['lesions']} lesions ({_rate(v['lesions_per_s'])} lesions/s)"
                                         for k, v in summary.items() if isinstance(v, dict)))
    return summary


def _rate(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _copy_ibsi(out: Path) -> None:
    """The shipped IBSI compliance table (generated by ``radae ibsi``) next to the features."""
    from radae.features.ibsi import shipped_table_path

    src = shipped_table_path()
    if not src.is_file():
        logger.warning("extract: %s is missing; no IBSI compliance table in this run", src)
        return
    with atomic_path(out / "ibsi_compliance.csv", suffix=".csv") as tmp:
        shutil.copyfile(src, tmp)
