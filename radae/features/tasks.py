"""The extract stage's lesions: the lesion index it reads, one PyRadiomics task per lesion, and resume keys.

A task's key (:func:`radiomics_tasks`) hashes what decides its features - :data:`EXTRACT_VERSION`, the modality's
validated PyRadiomics settings, the grid, the case and its inputs (preprocess key, or the original files' hashes) -
without reading a file. Each extracted lesion is saved as ``partial/radiomics/<case>-<hash>.json`` with its key
(:func:`save_partial`); a re-run reads it back when the key still matches (:func:`read_partial`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from radae.features import handcrafted as hc
from radae.runfolder import read_table
from radae.util.errors import ExtractError
from radae.util.fsutil import replace_write_text
from radae.util.values import as_text, json_clean

EXTRACT_VERSION = 1  # bump when the wrapper changes what a lesion's features are (invalidates partial results)

#: the columns of the stage's inputs it uses (only these are kept: the index is held for the whole stage)
ROI_COLUMNS = ("case_id", "patient_id", "modality", "roi_path", "radiomics_image", "radiomics_mask", "preprocess_key",
               "lesion_volume_ml", "warnings")
CASE_COLUMNS = ("case_id", "patient_id", "image", "mask", "image_sha256", "mask_sha256", "mask_label", "series_uid")


def read_index(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """The ``columns`` of a run-folder table that it has (:func:`radae.runfolder.read_table`), keys as text."""
    df = read_table(path, what, ExtractError, columns=columns)
    df = df[[c for c in columns if c in df.columns]]
    for k in ("case_id", "patient_id"):
        if k in df.columns:
            df[k] = df[k].astype(str)
    return df


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
            inputs = {"preprocess_key": as_text(r.get("preprocess_key"))}
            task = hc.LesionTask(case, str(r["patient_id"]), mod, as_text(r.get("radiomics_image")), as_text(r.get("radiomics_mask")))
        else:
            c = by_case.get(case)
            if c is None:
                raise ExtractError(f"case {case}: in preprocess/rois.parquet but not in ingest/cases.parquet -> rerun ingest and preprocess")
            inputs = {k: as_text(c.get(k)) for k in ("image_sha256", "mask_sha256", "mask_label", "series_uid")}
            task = hc.LesionTask(case, str(r["patient_id"]), mod, as_text(c.get("image")), as_text(c.get("mask")),
                                 mask_label=inputs["mask_label"], series_uid=inputs["series_uid"],
                                 image_sha256=inputs["image_sha256"], mask_sha256=inputs["mask_sha256"])
        key = hashlib.sha256(json.dumps({"v": EXTRACT_VERSION, "spec": spec_key, "grid": grid, "case": case, "inputs": inputs},
                                        sort_keys=True).encode()).hexdigest()
        tasks.append(dataclasses.replace(task, key=key))
    return tasks


def partial_path(folder: Path, case_id: str) -> Path:
    """Where one lesion's saved PyRadiomics result lives: a safe name plus a hash of the case id."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)[:80]
    return folder / f"{safe}-{hashlib.sha256(case_id.encode()).hexdigest()[:10]}.json"


def read_partial(folder: Path, task: hc.LesionTask) -> dict | None:
    """The result on disk for ``task`` if its key matches (same settings and inputs), else None."""
    try:
        res = json.loads(partial_path(folder, task.case_id).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(res, dict) and res.get("key") == task.key and res.get("case_id") == task.case_id
            and isinstance(res.get("features"), dict)):
        return None
    res["features"] = {k: (float("nan") if v is None else float(v)) for k, v in res["features"].items()}
    return res


def save_partial(folder: Path, res: dict) -> None:
    """One lesion's result (with its key) as strict JSON, replacing an older one."""
    payload = dict(res)
    payload["features"] = {k: (None if v != v else v) for k, v in res["features"].items()}  # NaN -> null (strict JSON)
    replace_write_text(partial_path(folder, res["case_id"]), json.dumps(json_clean(payload), sort_keys=True))
