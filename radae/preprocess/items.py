"""Training items from ``preprocess/rois.parquet``: every lesion ROI and random whole-volume patch, split by patient.

Used by pretraining (:mod:`radae.train`) and by the learned-feature extraction (:mod:`radae.features.latent`), so
both read a preprocessed ROI the same way. Patches carry no lesion mask, so with ``preprocess.mask_channel`` only
ROIs are used; validation = all items of a random ``val_fraction`` of the patients (grouped, so no patient is in
both).
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radae.config import PipelineConfig
from radae.preprocess.store import load_patches, load_roi
from radae.util.errors import TrainError, case_message
from radae.util.values import as_bool
from radae.runfolder import OnFailure

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("case_id", "patient_id", "modality", "roi_path", "patches_path", "is_evaluation")
SPLIT_STREAM = 12  # random-stream id of the patient train/val split (the others: radae.train.state)


@dataclass(frozen=True)
class Item:
    """One training sample: a lesion ROI (``index == -1``) or patch ``index`` of a patch file."""

    case_id: str
    patient_id: str
    modality: str
    path: str
    index: int


@dataclass
class DataSplit:
    train: list[Item]
    val: list[Item]
    info: dict = field(default_factory=dict)


def _npz_shape(path: str, key: str) -> tuple[int, ...]:
    """Shape of one array in an uncompressed/compressed .npz without reading its data."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = reader(fh)
    return tuple(shape)


def read_rois_index(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TrainError(case_message(None, path, "ROI index not found", "run the preprocess stage first"))
    df = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise TrainError(case_message(None, path, f"missing column(s) {missing}", "re-run the preprocess stage with this radae version"))
    if df.empty:
        raise TrainError(case_message(None, path, "no lesions in the ROI index", "check the preprocess failures.csv"))
    return df


def collect_items(df: pd.DataFrame, cfg: PipelineConfig, roi_size_zyx: tuple[int, int, int],
                  fail: OnFailure) -> DataSplit:
    """Turn the ROI index into train/val items; files that are missing or have the wrong shape go to ``fail``."""
    pcfg = cfg.pretrain
    is_eval = df["is_evaluation"].map(as_bool)
    info: dict = {"include_evaluation_patients": pcfg.include_evaluation_patients,
                  "excluded_evaluation_patients": 0, "excluded_evaluation_lesions": 0, "patches_skipped_no_mask": 0}
    if not pcfg.include_evaluation_patients and is_eval.any():
        info["excluded_evaluation_patients"] = int(df.loc[is_eval, "patient_id"].astype(str).nunique())
        info["excluded_evaluation_lesions"] = int(is_eval.sum())
        df = df[~is_eval]
    if df.empty:
        raise TrainError("pretrain: every lesion belongs to an evaluation patient -> add unlabeled scans or set "
                         "pretrain.include_evaluation_patients: true (recorded in the run)")
    items: list[Item] = []
    use_patches = "patches" in pcfg.sources
    for r in df.itertuples(index=False):
        case, pid, mod = str(r.case_id), str(r.patient_id), str(r.modality).upper()
        if "rois" in pcfg.sources:
            roi = str(r.roi_path or "")
            try:
                shape = _npz_shape(roi, "image")
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
                fail(case, f"ROI file unreadable ({type(e).__name__}); lesion left out of pretraining", roi)
                continue
            if shape != roi_size_zyx:
                fail(case, f"ROI shape {shape} differs from {roi_size_zyx} (z,y,x); left out of pretraining", roi)
                continue
            items.append(Item(case, pid, mod, roi, -1))
        pp = str(r.patches_path or "") if use_patches else ""
        if pp:
            try:
                shape = _npz_shape(pp, "patches")
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
                fail(case, f"patch file unreadable ({type(e).__name__}); its patches are left out", pp)
                continue
            if tuple(shape[1:]) != roi_size_zyx:
                fail(case, f"patch shape {tuple(shape[1:])} differs from {roi_size_zyx} (z,y,x); left out", pp)
                continue
            if cfg.preprocess.mask_channel:
                info["patches_skipped_no_mask"] += int(shape[0])
                continue
            items += [Item(case, pid, mod, pp, i) for i in range(int(shape[0]))]
    if info["patches_skipped_no_mask"]:
        logger.warning("pretrain: %d random patches skipped: they have no lesion mask and preprocess.mask_channel is on",
                       info["patches_skipped_no_mask"])
    if not items:
        raise TrainError("pretrain: no usable ROI or patch files (see pretrain/failures.csv) -> re-run preprocess")
    mods = sorted({it.modality for it in items})
    if len(mods) > 1 and not pcfg.allow_mixed_modalities:
        raise TrainError(f"pretrain: the training lesions mix modalities ({', '.join(mods)}); one autoencoder would learn "
                         "them as one kind of image -> keep one modality per pipeline (data.modalities: [MR]) or set "
                         "pretrain.allow_mixed_modalities: true (recorded in the run)")
    info["modalities"], info["allow_mixed_modalities"] = mods, pcfg.allow_mixed_modalities
    patients = sorted({it.patient_id for it in items})
    n_val = 0
    if pcfg.val_fraction > 0 and len(patients) >= 2:
        n_val = min(len(patients) - 1, max(1, round(pcfg.val_fraction * len(patients))))
    elif pcfg.val_fraction > 0:
        logger.warning("pretrain: only one patient; no validation split (early stopping and val PSNR are off)")
    order = np.random.default_rng([cfg.seed, SPLIT_STREAM]).permutation(len(patients))
    val_patients = {patients[i] for i in order[:n_val]}
    split = DataSplit([it for it in items if it.patient_id not in val_patients],
                      [it for it in items if it.patient_id in val_patients], info)
    info.update(train_items=len(split.train), val_items=len(split.val),
                train_patients=len(patients) - n_val, val_patients=n_val)
    return split


class ItemReader:
    """Loads items as float32 ``(C, Z, Y, X)`` arrays; keeps the last few patch files (one process / worker each)."""

    def __init__(self, mask_channel: bool, cache_files: int = 8):
        self.mask_channel = mask_channel
        self.cache_files = cache_files
        self._cache: dict[str, np.ndarray] = {}

    def _patches(self, path: str) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            arr = load_patches(path)
            if len(self._cache) >= self.cache_files:
                self._cache.pop(next(iter(self._cache)))
            self._cache[path] = arr
        return arr

    def load(self, item: Item) -> np.ndarray:
        return self.load_with_mask(item)[0]

    def load_with_mask(self, item: Item) -> tuple[np.ndarray, np.ndarray | None]:
        """``(model input (C, Z, Y, X) float32, lesion mask (Z, Y, X) uint8 or None for a patch)``."""
        mask = None
        if item.index < 0:
            roi = load_roi(item.path)
            chans = [roi.image.astype(np.float32)]
            mask = roi.mask.astype(np.uint8)
            if self.mask_channel:
                chans.append(roi.mask.astype(np.float32))
        else:
            chans = [self._patches(item.path)[item.index].astype(np.float32)]
        out = np.stack(chans)
        if not np.isfinite(out).all():
            raise TrainError(case_message(item.case_id, item.path, "non-finite voxels in a preprocessed array",
                                          "delete the preprocess cache entry and re-run preprocess"))
        return out, mask
