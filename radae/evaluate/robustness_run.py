"""The benchmark's perturbation study: real lesions through the shared path and the extractors, and ICC filters.

Every perturbation is applied to the original scan and goes through ``preprocess_lesion`` and the real extractors
(:func:`find_extractors`), so the study measures what each feature set actually sees. With
``benchmark.robustness.robust_only`` the study's ICCs on each fold's *training* lesions decide which columns the
fold's model may use (:func:`robust_column_filters`). The statistics live in :mod:`radae.evaluate.robustness`.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from radae.config import BenchmarkConfig, PipelineConfig
from radae.evaluate import icc, perturbations, robustness
from radae.evaluate.cohort import Cohort, FeatureSet
from radae.util.errors import BenchmarkError
from radae.util.values import as_text
from radae.runfolder import OnFailure, write_parquet

logger = logging.getLogger(__name__)

SUBSET_STREAM = 13  # the seeded random subset of lesions: SeedSequence([seed, SUBSET_STREAM])

LesionExtractor = Callable[[dict], Mapping[str, Mapping[str, float]]]


def find_extractors(cfg: PipelineConfig, run_dir: Path) -> tuple[LesionExtractor | None, str]:
    """The real extractors as ``fn(roi_index_row) -> {"learned": {...}, "handcrafted": {...}}``.

    Returns (None, reason) when they are not available (not installed yet, or disabled in the config),
    so robustness is reported as skipped rather than faked.
    """
    try:
        from radae.features import handcrafted as hc_mod  # noqa: F401
        from radae.features import latent as lat_mod  # noqa: F401
    except ImportError as e:
        return None, f"feature extractors not importable ({e})"
    fn = getattr(lat_mod, "robustness_extractor", None) or getattr(hc_mod, "robustness_extractor", None)
    if fn is None:
        return None, "radae.features does not expose robustness_extractor(cfg, run_dir) yet"
    return fn(cfg, run_dir), ""


def perturbed_lesion_features(
    case_row: dict,
    pert: perturbations.Perturbation | None,
    cfg: PipelineConfig,
    extractor: LesionExtractor,
    seed: int,
    work_dir: Path,
) -> Mapping[str, Mapping[str, float]]:
    """Perturb one lesion's original scan and run it through the whole shared path and the extractors.

    The original image and mask are read as preprocess reads them, the perturbation is applied on the
    original grid, the result is written as NIfTI into ``work_dir`` and handed to
    ``preprocess_lesion`` (with a private cache, so nothing is reused from the real one), and the
    resulting ROI index row goes to ``extractor``. ``pert=None`` runs the unperturbed scan the same way.
    """
    import SimpleITK as sitk

    from radae.io import read_image, read_mask
    from radae.io.volume import Volume
    from radae.preprocess.lesion import preprocess_lesion

    row = dict(case_row)
    case = str(row["case_id"])
    image = read_image(row["image"], series_uid=as_text(row.get("series_uid")) or None, case_id=case)
    mask = read_mask(row["mask"], as_text(row.get("mask_label")) or None, image, image_path=row["image"], case_id=case)
    img, msk, spacing = image.array.astype(np.float32), (mask.array > 0).astype(np.uint8), image.spacing_mm
    if pert is not None:
        img, msk, spacing = perturbations.apply_perturbation(pert, img, msk, spacing, str(row.get("modality", "")))
    name = "original" if pert is None else pert.kind
    folder = work_dir / case / name
    folder.mkdir(parents=True, exist_ok=True)
    vol_img = Volume(img, tuple(spacing), image.origin_mm, image.direction)
    vol_msk = Volume(msk, tuple(spacing), image.origin_mm, image.direction)
    sitk.WriteImage(vol_img.to_sitk(), str(folder / "image.nii"))
    sitk.WriteImage(vol_msk.to_sitk(), str(folder / "mask.nii"))
    row.update(image=str(folder / "image.nii"), mask=str(folder / "mask.nii"), mask_label=None, series_uid=None,
               image_sha256=f"perturbed-{name}", mask_sha256=f"perturbed-{name}")
    try:
        meta = preprocess_lesion(row, cfg.preprocess, folder / "cache", seed)
        return {**extractor(meta), robustness.INPUTS_KEY: robustness.input_digests(meta, cfg.preprocess.mask_channel)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # scans can be large; keep one condition on disk at a time


def run_robustness(
    cases: pd.DataFrame,
    cfg: PipelineConfig,
    extractor: LesionExtractor,
    seed: int,
    on_failure: OnFailure,
    inputs: list[dict] | None = None,
) -> pd.DataFrame:
    """The perturbation study on up to ``max_lesions`` lesions (a seeded random subset, masks required).

    ``inputs`` collects per lesion and condition the digest of each set's extractor input (see
    :func:`radae.evaluate.robustness.input_changes`)."""
    rcfg = cfg.benchmark.robustness
    cand = cases[cases["mask"].astype(str).str.len() > 0].sort_values("case_id")
    ids = cand["case_id"].astype(str).to_numpy()
    if len(ids) > rcfg.max_lesions:
        rng = np.random.default_rng(np.random.SeedSequence([seed, SUBSET_STREAM]))
        ids = np.sort(rng.choice(ids, size=rcfg.max_lesions, replace=False))
    by_id = {str(r["case_id"]): r for r in cand.to_dict("records")}
    settings = perturbations.PerturbationSettings(rcfg.noise_scale, rcfg.resample_factor, rcfg.rotation_deg, rcfg.translation_vox)
    with tempfile.TemporaryDirectory(prefix="radae-robustness-") as tmp:
        def extract(cid: str, pert):
            return perturbed_lesion_features(by_id[cid], pert, cfg, extractor, seed, Path(tmp))

        return robustness.perturbation_study(
            list(ids), rcfg.perturbations, extract, seed, settings,
            on_failure=on_failure, inputs=inputs,
        )


def robustness_study(cases: pd.DataFrame, cfg: PipelineConfig, extractor: LesionExtractor, seed: int, on_failure: OnFailure,
                     out_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Run the study on ``cases`` (the cohort's lesions), write its tables into ``out_dir``; (values, summary block).

    Writes ``robustness.parquet`` (ICC per feature), ``robustness_values.parquet`` (the raw study values) and the
    extras of :func:`radae.evaluate.robustness.write_study_extras`."""
    bcfg = cfg.benchmark
    digests: list[dict] = []
    values = run_robustness(cases, cfg, extractor, seed, on_failure, digests)
    if values.empty:
        raise BenchmarkError("robustness: every lesion failed the perturbation study (see benchmark/failures.csv) -> fix them or set benchmark.robustness.enabled: false")
    table = icc.icc_table(values, bcfg.robustness.icc).assign(icc_kind=bcfg.robustness.icc)
    write_parquet(table, out_dir / "robustness.parquet")
    write_parquet(values, out_dir / "robustness_values.parquet")
    summary = {"status": "done", "reason": "", "icc": bcfg.robustness.icc,
               "n_lesions": int(values["case_id"].nunique()), "perturbations": list(bcfg.robustness.perturbations),
               "sets": icc.robust_fractions(table)}
    summary.update(robustness.write_study_extras(values, pd.DataFrame(digests), bcfg.robustness.icc, seed, out_dir))
    return values, summary


def robust_column_filters(cohort: Cohort, values: pd.DataFrame, bcfg: BenchmarkConfig) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Per feature set, a fold filter keeping columns whose ICC on the *training* lesions >= threshold.

    Columns outside the study (volume, clinical, voxels) are always kept.
    """
    rcfg = bcfg.robustness
    cubes = icc.value_cubes(values)
    lesion_rows = cohort.lesions

    def make(fs: FeatureSet):
        def filt(train_idx: np.ndarray) -> np.ndarray:
            train_case_ids = lesion_rows.loc[lesion_rows["row"].isin(train_idx), "case_id"].to_numpy()
            keep = np.ones(len(fs.columns), dtype=bool)
            for sset, cube in cubes.items():
                vals, n_used = icc.icc_from_cube(cube, rcfg.icc, train_case_ids)
                if (n_used < 3).all():
                    raise BenchmarkError("robust_only: fewer than 3 training lesions of the robustness study in a fold -> raise benchmark.robustness.max_lesions")
                icc_of = dict(zip(cube.features, vals))
                for j, (col, st) in enumerate(zip(fs.columns, fs.column_study)):
                    if st == sset:
                        v = icc_of.get(col, np.nan)
                        keep[j] = bool(np.isfinite(v) and v >= rcfg.threshold)
            return keep

        return filt

    return {name: make(fs) for name, fs in cohort.sets.items() if any(st is not None for st in fs.column_study)}


def task_filters(filters: dict, mask: np.ndarray) -> dict:
    """Column filters take task-row indices; map them back to cohort rows."""
    rows = np.flatnonzero(mask)

    def on_task_rows(f):
        return lambda train_idx: f(rows[train_idx])

    return {k: on_task_rows(f) for k, f in filters.items()}
