"""``radae features``: PyRadiomics-style feature extraction without a pipeline YAML.

- ``radae features IMAGE MASK [--params FILE] [--label N]``: one lesion, one CSV row on stdout (like
  ``pyradiomics IMAGE MASK``).
- ``radae features --manifest cases.csv --jobs N --out features.csv [--model model.pt]``: every row of a radae
  manifest, through the extract stage's own code (:func:`radae.features.run.write_tables`): the same tables,
  provenance, data dictionary and ``failures.csv``. They are written to the work folder ``<out stem>_radae/``
  beside ``--out`` (``ingest/`` and ``extract/``, a run-folder layout); ``--out`` is a copy of
  ``extract/radiomics.csv`` (and ``<out stem>_latent.csv`` of ``latent.csv`` with ``--model``). A second call with
  the same inputs reads finished lesions back from the work folder (delete it to start over).

PyRadiomics runs on the original image and mask, as the ``pyradiomics`` command does; it resamples only when the
parameter file sets ``resampledPixelSpacing``. Without ``--params`` radae's shipped file for the manifest's
modality is used, Original features only (``--image-types`` to change). ``--model`` (a ``pretrain/model.pt``)
adds the learned features: lesions are preprocessed with the settings the model was trained with (stored in it).
The radiomics-only path does not import torch (start-up is part of ``benchmarks/bench_vs_pyradiomics.py``), and its
worker processes start on the lesions before this module (pandas, pyarrow, pydantic) is imported
(:mod:`radae.features.prefetch`; the CLI passes them in as ``prefetch``).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from radae.features.prefetch import work_folder
from radae.util.errors import ConfigError, ExtractError, RadaeError

logger = logging.getLogger(__name__)


def _spec(params: Path | None, modality: str, image_types):
    from radae.features import handcrafted as hc

    if params is not None and not Path(params).is_file():
        raise ConfigError(f"--params: file not found: {params}")
    path = Path(params) if params is not None else hc.shipped_params_path(modality)
    types = image_types if image_types else (None if params is not None else ("Original",))
    return hc.spec_from_file(path, grid="original", image_types=types, spacing_mm=None)


def one_lesion(image: Path, mask: Path, params: Path | None = None, label: str | int | None = 1, modality: str = "CT",
               image_types=None) -> dict[str, float]:
    """PyRadiomics features of one image/mask pair (``label`` of the mask; ROI name for RTSTRUCT)."""
    from radae.features import handcrafted as hc

    for what, p in (("IMAGE", image), ("MASK", mask)):
        if not Path(p).exists():
            raise ExtractError(f"{what} {p}: file not found")
    spec = _spec(params, modality, image_types)
    task = hc.LesionTask(case_id=Path(image).name, patient_id="", modality=modality, image=str(image), mask=str(mask),
                         mask_label="" if label is None else str(label))
    res = hc.run_lesion(task, {modality: spec})
    if res["error"]:
        raise ExtractError(res["error"])
    return res["features"]


def _config(manifest: Path, out: Path, params, jobs: int, image_types, model_meta: dict | None, executor: str):
    from radae.config import PipelineConfig

    work = work_folder(out)
    raw = {
        "name": work.name, "runs_dir": str(work.parent), "stages": ["ingest", "preprocess"] if model_meta else ["ingest"],
        "data": {"manifest": str(Path(manifest).resolve())},
        "extract": {"latent": {"enabled": model_meta is not None},
                    "radiomics": {"params": None if params is None else str(Path(params).resolve()), "grid": "original",
                                  "image_types": list(image_types) if image_types else (None if params else ["Original"])},
                    "n_jobs": jobs, "executor": executor},
    }
    if model_meta is not None:
        pre = dict(model_meta.get("preprocess") or {})
        pre.update(cache_dir=str(work / "cache"), n_jobs=jobs)
        raw["preprocess"] = pre
        raw["seed"] = int(model_meta.get("seed", 0))
    try:
        return PipelineConfig.model_validate(raw)
    except Exception as e:  # pydantic ValidationError: the model's stored settings do not fit this radae
        raise ConfigError(f"--model: its stored preprocess settings are not valid here ({str(e).splitlines()[0]})") from None


def _model_meta(model: Path) -> dict:
    from radae.models.checkpoint import MODEL_FORMAT, read_torch

    if not Path(model).is_file():
        raise ConfigError(f"--model: file not found: {model}")
    ck = read_torch(model, MODEL_FORMAT)
    meta = ck.get("extra") or {}
    if not isinstance(meta, dict) or "preprocess" not in meta:
        raise ConfigError(f"--model {model}: not a radae pretrain/model.pt (no stored preprocess settings)")
    return meta


def manifest_features(manifest: Path, out: Path, stages: Mapping[str, Callable], params: Path | None = None, jobs: int = 1,
                      model: Path | None = None, image_types=None, executor: str = "process", quiet: bool = False,
                      prefetch=None) -> dict:
    """Every manifest row through ingest (+ preprocess with ``model``) and the extract stage's table writer.

    ``stages``: the ``ingest`` and ``preprocess`` stage functions (``radae.stages.<name>.run``), passed in by the CLI
    so this library module does not import the stage layer above it. ``prefetch``: the workers the CLI started on the
    lesions before importing this module (:func:`radae.features.prefetch.start`).
    """
    from radae.util.fsutil import ensure_dir, run_lock
    from radae.runfolder import RunContext, write_run_header

    meta = _model_meta(Path(model)) if model is not None else None
    cfg = _config(manifest, out, params, jobs, image_types, meta, executor)
    ctx = RunContext(cfg=cfg, run_dir=cfg.run_dir, quiet=quiet, extra={"radiomics_native_grid": True,
                                                                       "radiomics_prefetch": prefetch})
    ensure_dir(cfg.run_dir)
    with run_lock(cfg.run_dir):
        write_run_header(ctx, device=meta is not None)
        _stage(ctx, "ingest", lambda: stages["ingest"](ctx))
        if meta is not None:
            _stage(ctx, "preprocess", lambda: _preprocess(ctx, stages["preprocess"], Path(model)))
        summary = _stage(ctx, "extract", lambda: _extract(ctx))
    out = Path(out)
    ext = cfg.run_dir / "extract"
    if summary.get("radiomics"):
        shutil.copyfile(ext / "radiomics.csv", out)
    if summary.get("latent"):
        shutil.copyfile(ext / "latent.csv", out.with_name(f"{out.stem}_latent.csv"))
    fails = pd.read_csv(cfg.run_dir / "failures.csv", dtype=str, keep_default_na=False)
    return {"summary": summary, "work": cfg.run_dir, "failures": len(fails), "out": out}


def _stage(ctx, name: str, fn):
    from radae.runfolder import write_failures

    ctx.stage_name, ctx.failures = name, []
    try:
        return fn()
    finally:
        write_failures(ctx, name)


def _preprocess(ctx, preprocess: Callable, model: Path) -> None:
    preprocess(ctx)
    target = ctx.stage_dir("pretrain") / "model.pt"
    shutil.copyfile(model, target)


def _extract(ctx) -> dict:
    from radae.features import table as tbl
    from radae.features.run import write_tables
    from radae.features.tasks import CASE_COLUMNS, ROI_COLUMNS, read_index

    cases = read_index(ctx.run_dir / "ingest" / "cases.parquet", "case table", CASE_COLUMNS + ("modality",))
    if ctx.cfg.extract.latent.enabled:
        rois = read_index(ctx.run_dir / "preprocess" / "rois.parquet", "ROI index", ROI_COLUMNS)
    else:
        rois = cases[["case_id", "patient_id", "modality"]].copy()
    rois = rois.sort_values(tbl.KEYS, kind="mergesort").reset_index(drop=True)
    summary = write_tables(ctx, rois, cases, ctx.stage_dir())
    (ctx.stage_dir() / "_stage.json").write_text(json.dumps({"status": "done", "by": "radae features"}))
    return summary


__all__ = ["one_lesion", "manifest_features", "work_folder", "RadaeError"]
