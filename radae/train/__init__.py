"""Pretraining: data from the preprocess stage, the training loop, checkpoints, exact resume, multi-GPU (DDP).

Normally run as the ``pretrain`` stage of ``radae run`` (one process). For several GPUs::

    torchrun --nproc_per_node=K -m radae.cli run PIPELINE.yaml --stages pretrain [--resume] [--force] [--set k=v]

which trains with DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 holds the run lock and writes every
file (:func:`radae.runner.run_pretrain_distributed`); ``pretrain.batch_size`` is per process (global batch =
K * batch_size).

Data: every ROI (``rois.parquet`` -> ``roi_path``, image + optional mask channel) and every random whole-volume
patch (``patches_path``) of non-evaluation patients; validation = all items of a random ``val_fraction`` of the
patients (grouped, so no patient is in both). Patches carry no lesion mask, so with ``preprocess.mask_channel``
only ROIs are used.

Determinism and exact resume: every random draw of optimizer step t (which items, flips/rotations/intensity
jitter, noise level and noise, VAE epsilon) comes from a generator seeded by (seed, rank, t), and the item order
is a fixed function of (seed, epoch). A checkpoint therefore only needs model, optimizer, scheduler, scaler,
global torch RNG (dropout), early-stopping state and the step: resuming reproduces an uninterrupted run bit for
bit on CPU (same thread count).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn

from radae.config import PipelineConfig, stable_hash
from radae.util.errors import RadaeError, TrainError, case_message
from radae.util.fsutil import atomic_write_bytes, atomic_write_text
from radae.models import build_model, count_parameters
from radae.models.checkpoint import CHECKPOINT_FORMAT, FORMAT_VERSION, cpu_state_dict, read_torch, save_model, save_torch, unwrap
from radae.models.losses import code_of, compute_loss, jacobian_frobenius_sq, psnr, reconstruction_loss
from radae.models.noise import NOISE_KINDS, corrupt, noise_codes, noise_settings
from radae.preprocess.store import load_patches, load_roi
from radae.train.progress import TrainProgress, fmt as _g

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("case_id", "patient_id", "modality", "roi_path", "patches_path", "is_evaluation")
# pretrain fields that change bookkeeping only, not the trajectory: a checkpoint stays valid when they change
RUN_ONLY_FIELDS = ("checkpoint_every", "preview_every", "num_workers", "log_every", "device", "loader", "max_minutes")
INTENSITY_SCALE = 0.1  # augmentation: intensity * U(1 - s, 1 + s)
INTENSITY_SHIFT = 0.05  # augmentation: + U(-s, s), normalised units
RESIDENT_FRACTION = 0.4  # loader auto: keep data in memory if it needs < this share of free (GPU) memory
METRIC_COLUMNS = ["step", "epoch", "split", "loss", "recon", "kl", "sparse", "beta", "lr", "grad_norm",
                  "patches_per_s", "data_wait_fraction", "psnr_noisy", "psnr_recon", "psnr_gain_db", "elapsed_s",
                  "contractive"]
_STREAM_SEED, _SPLIT_SEED, _ORDER_SEED, _VAL_SEED = 11, 12, 13, 14


# ----------------------------------------------------------------------------- distributed / device
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA if available, else CPU. Under DDP each process takes GPU ``LOCAL_RANK``."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise TrainError("pretrain.device is 'cuda' but torch sees no CUDA device -> use device: auto or cpu")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def step_seed(seed: int, stream: int, rank: int, step: int) -> int:
    """A 63-bit seed for generator stream ``stream`` at ``step`` on ``rank`` (counter-based, no state to save)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, stream, rank, step]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# ----------------------------------------------------------------------------- data
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


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False


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
                  fail: Callable[[str | None, str, str | None], None]) -> DataSplit:
    """Turn the ROI index into train/val items; files that are missing or have the wrong shape go to ``fail``."""
    pcfg = cfg.pretrain
    is_eval = df["is_evaluation"].map(_truthy)
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
    order = np.random.default_rng([cfg.seed, _SPLIT_SEED]).permutation(len(patients))
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


class ItemDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Item], mask_channel: bool):
        self.items = items
        self.reader = ItemReader(mask_channel)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return torch.from_numpy(self.reader.load(self.items[i])), i


class StepOrder:
    """Items for optimizer step t (1-based): positions ``[(t-1) W B + r B, ... + B)`` of the endless concatenation
    of per-epoch permutations (epoch e shuffled by (seed, e)); rank r of W takes its own B consecutive positions."""

    def __init__(self, n_items: int, batch: int, world: int, seed: int):
        self.n, self.batch, self.world, self.seed = n_items, batch, world, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, _ORDER_SEED, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int, rank: int) -> np.ndarray:
        start = ((step - 1) * self.world + rank) * self.batch
        pos = np.arange(start, start + self.batch)
        return np.asarray([self._perm(int(p // self.n))[p % self.n] for p in pos], dtype=np.int64)

    def epoch(self, step: int) -> float:
        return step * self.world * self.batch / self.n


class _StepBatches(torch.utils.data.Sampler):
    def __init__(self, order: StepOrder, first_step: int, last_step: int, rank: int):
        self.order, self.first, self.last, self.rank = order, first_step, last_step, rank

    def __iter__(self):
        for step in range(self.first, self.last + 1):
            yield self.order.indices(step, self.rank).tolist()

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def load_resident(items: list[Item], reader: ItemReader, device: torch.device) -> Tensor:
    arrays = [reader.load(it) for it in items]
    data = torch.from_numpy(np.stack(arrays))
    if device.type == "cuda":
        return data.to(device)
    return data


def batch_stream(mode: str, items: list[Item], codes: np.ndarray, mask_channel: bool, order: StepOrder, first_step: int,
                 last_step: int, rank: int, device: torch.device, num_workers: int,
                 resident: Tensor | None) -> Iterator[tuple[Tensor, np.ndarray]]:
    """Yields ``(x on device (B, C, Z, Y, X) float32, noise codes (B,))`` for steps first..last."""
    if mode == "resident":
        assert resident is not None
        for step in range(first_step, last_step + 1):
            idx = order.indices(step, rank)
            x = resident.index_select(0, torch.as_tensor(idx, device=resident.device))
            yield x.to(device, non_blocking=True), codes[idx]
        return
    loader = torch.utils.data.DataLoader(
        ItemDataset(items, mask_channel), batch_sampler=_StepBatches(order, first_step, last_step, rank),
        num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None)
    for x, idx in loader:
        yield x.to(device, non_blocking=True), codes[idx.numpy()]


# ----------------------------------------------------------------------------- augmentation
def augment_batch(x: Tensor, generator: torch.Generator, image_channel: int = 0) -> Tensor:
    """Random flips per axis, 90-degree rotation in the (y, x) plane (180 only if Y != X), intensity jitter on the
    image channel: ``x * U(1 - 0.1, 1 + 0.1) + U(-0.05, 0.05)``. Parameters are drawn first, then applied."""
    b, c = x.shape[:2]
    dev = x.device
    flips = torch.rand((b, 3), generator=generator, device=dev) < 0.5
    k = torch.randint(0, 4, (b,), generator=generator, device=dev)
    scale = 1.0 + INTENSITY_SCALE * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    shift = INTENSITY_SHIFT * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    square = x.shape[-1] == x.shape[-2]
    if not square:
        k = (k // 2) * 2
    view = (b, 1, 1, 1, 1)
    out = x
    for axis in range(3):
        out = torch.where(flips[:, axis].view(view), out.flip(2 + axis), out)
    rotated = out
    for kk in (1, 2, 3) if square else (2,):
        rotated = torch.where((k == kk).view(view), torch.rot90(out, kk, dims=(3, 4)), rotated)
    chan = torch.zeros((1, c, 1, 1, 1), device=dev, dtype=torch.bool)
    chan[:, image_channel] = True
    jittered = rotated * scale.view(view) + shift.view(view)
    return torch.where(chan, jittered, rotated)


# ----------------------------------------------------------------------------- logs
class MetricsLog:
    """metrics.csv + metrics.jsonl (same rows). On resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, folder: Path, keep_until_step: int | None):
        self.csv_path, self.jsonl_path = folder / "metrics.csv", folder / "metrics.jsonl"
        rows: list[dict] = []
        if keep_until_step is not None and self.jsonl_path.exists():
            for line in self.jsonl_path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if int(row.get("step", 0)) <= keep_until_step:
                        rows.append(row)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
        atomic_write_text(self.csv_path, buf.getvalue())
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
        self.rows = rows
        self._tb = None
        with contextlib.suppress(ImportError, ModuleNotFoundError):
            from torch.utils.tensorboard import SummaryWriter  # only if tensorboard is installed

            self._tb = SummaryWriter(str(folder / "tensorboard"))

    def write(self, row: dict) -> None:
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.rows.append(row)
        with open(self.jsonl_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


SOFT_TISSUE_HU = (-160.0, 240.0)  # preview window for CT (W 400, L 40), mapped into the normalised units


def display_window(modality: str, clean: np.ndarray, normalise: dict) -> tuple[float, float]:
    """Grey-level window of a preview in normalised units: CT soft tissue (W400 L40 HU) within the configured HU
    window; MR the 1st-99th percentile of the clean ROI; PET 0 to its 99.5th percentile."""
    mod = str(modality).upper()
    if mod == "CT":
        lo_hu, hi_hu = float(normalise.get("hu_min", -1000.0)), float(normalise.get("hu_max", 400.0))
        to_unit = lambda hu: (min(max(hu, lo_hu), hi_hu) - lo_hu) / (hi_hu - lo_hu)  # noqa: E731
        lo, hi = to_unit(SOFT_TISSUE_HU[0]), to_unit(SOFT_TISSUE_HU[1])
    elif mod in ("PET", "PT"):
        lo, hi = 0.0, float(np.percentile(clean, 99.5))
    else:
        lo, hi = (float(v) for v in np.percentile(clean, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def save_preview(path: Path, clean: np.ndarray, noisy: np.ndarray, recon: np.ndarray, title: str,
                 window: tuple[float, float] | None = None) -> None:
    """PNG: rows = central axial, coronal, sagittal slices; columns = clean input, noisy input, reconstruction (one
    grey-level ``window`` for all three) and |reconstruction - clean| (its own colour scale, 0 to half the window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 7.2), dpi=100)
    FigureCanvasAgg(fig)
    lo, hi = window if window is not None else tuple(np.percentile(clean, [0.5, 99.5]))
    if hi <= lo:
        hi = lo + 1.0
    err = np.abs(recon - clean)
    cz, cy, cx = (n // 2 for n in clean.shape)
    cols = (("clean", clean, "gray", lo, hi), ("noisy", noisy, "gray", lo, hi), ("reconstruction", recon, "gray", lo, hi),
            ("|error|", err, "magma", 0.0, (hi - lo) / 2))
    for r, plane in enumerate(("axial", "coronal", "sagittal")):
        for c, (name, vol, cmap, vmin, vmax) in enumerate(cols):
            sl = (vol[cz], vol[:, cy], vol[:, :, cx])[r]
            ax = fig.add_subplot(3, 4, 4 * r + c + 1)
            ax.imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower" if r else "upper", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(plane, fontsize=9)
    fig.suptitle(f"{title}  (window {lo:.3g} to {hi:.3g}, normalised units)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, codes: np.ndarray, cfg: PipelineConfig, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager], channels_last: bool) -> dict:
    """Validation reconstruction loss (clean target, eval mode, fixed noise) and PSNR of noisy / reconstructed input."""
    pcfg = cfg.pretrain
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(step_seed(cfg.seed, _VAL_SEED, 0, 0))
    loss_sum, n, p_noisy, p_recon = 0.0, 0, [], []
    for start in range(0, data.shape[0], pcfg.batch_size):
        x = data[start:start + pcfg.batch_size].to(device)
        noisy = corrupt(x, codes[start:start + x.shape[0]], pcfg.noise.sigma, gen, **noise_settings(pcfg.noise))
        inp = noisy.contiguous(memory_format=torch.channels_last_3d) if channels_last else noisy
        with autocast():
            recon = model(inp).recon.float()
        loss_sum += float(reconstruction_loss(recon, x, pcfg.loss, pcfg.ssim_weight)) * x.shape[0]
        n += x.shape[0]
        p_noisy.append(psnr(noisy[:, :1], x[:, :1]).cpu())
        p_recon.append(psnr(recon[:, :1], x[:, :1]).cpu())
    model.train(was_training)
    pn, pr = float(torch.cat(p_noisy).mean()), float(torch.cat(p_recon).mean())
    return {"val_loss": loss_sum / max(n, 1), "psnr_noisy": pn, "psnr_recon": pr, "psnr_gain_db": pr - pn}


# ----------------------------------------------------------------------------- hashes, checkpoints
def training_hash(cfg: PipelineConfig, in_channels: int, roi_size_zyx: tuple[int, int, int]) -> str:
    """What a checkpoint must match to be resumed: the trajectory-relevant pretrain config, seed, input shape."""
    p = cfg.pretrain.model_dump(mode="json")
    for k in RUN_ONLY_FIELDS:
        p.pop(k, None)
    return stable_hash({"pretrain": p, "seed": cfg.seed, "in_channels": in_channels, "roi_size_zyx": list(roi_size_zyx)})


def data_hash(split: DataSplit, df: pd.DataFrame) -> str:
    keys = df["preprocess_key"].astype(str).tolist() if "preprocess_key" in df.columns else []
    return stable_hash({"train": [(i.case_id, i.index) for i in split.train], "val": [(i.case_id, i.index) for i in split.val],
                        "preprocess_keys": sorted(keys)})


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(t: int) -> float:  # t = optimizer steps already taken
        if t < warmup:
            return (t + 1) / (warmup + 1)
        progress = (t - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def planned_steps(pcfg, n_train_items: int, world: int) -> tuple[int, dict]:
    """Optimizer steps the run plans: ``pretrain.epochs`` passes over the training items when set, else
    ``pretrain.steps``; the warm-up + cosine schedule spans exactly these. ``max_minutes`` may end the run earlier
    (then the result depends on the machine's speed: recorded as ``stopped_by_time``)."""
    if pcfg.epochs is not None:
        steps = max(1, math.ceil(pcfg.epochs * n_train_items / (pcfg.batch_size * world)))
        how = f"epochs={pcfg.epochs:g}"
    else:
        steps, how = pcfg.steps, f"steps={pcfg.steps}"
    return steps, {"planned_by": how, "max_minutes": pcfg.max_minutes, "early_stopping_patience": pcfg.early_stopping_patience}


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class _EarlyStop:
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    stopped: bool = False
    best_state: dict | None = None


MEAN_IMAGE_ITEMS = 512  # training items averaged for the diagnostics' mean-image baseline (seeded subset)


def run_diagnostics(model: nn.Module, final_state: dict | None, split: DataSplit, val_data: Tensor | None,
                    val_codes: np.ndarray, train_codes: np.ndarray, resident: Tensor | None, reader: ItemReader,
                    cfg: PipelineConfig, device: torch.device, metric_rows: list[dict], stopped_early: bool,
                    channels_last: bool) -> dict:
    """``pretrain/diagnostics.json`` (:mod:`radae.models.diagnostics`) for the weights the run keeps."""
    import copy

    from radae.models import diagnostics

    if final_state is not None:
        model = copy.deepcopy(model)
        model.load_state_dict(final_state)
    rng = np.random.default_rng([cfg.seed, _VAL_SEED])
    pick = np.sort(rng.permutation(len(split.train))[:MEAN_IMAGE_ITEMS])
    if resident is not None:
        train_x = resident.index_select(0, torch.as_tensor(pick, device=resident.device)).float().cpu()
    else:
        train_x = torch.from_numpy(np.stack([reader.load(split.train[i]) for i in pick]))
    mean_image = train_x.mean(0)
    if val_data is not None and len(val_data):
        data, codes, which = val_data, val_codes, "val"
    else:
        data, codes, which = train_x, train_codes[pick], "train (no validation split)"
    history = [(int(r["step"]), float(r["loss"])) for r in metric_rows if r.get("split") == "val" and r.get("loss") is not None]
    return diagnostics.build(model, data, codes, mean_image, cfg.pretrain.noise.model_dump(mode="json"), cfg.seed, device,
                             cfg.pretrain.batch_size, history, stopped_early, which, channels_last)


# ----------------------------------------------------------------------------- the loop
def run_training(cfg: PipelineConfig, run_dir: str | Path, resume: bool = False,
                 fail: Callable[[str | None, str, str | None], None] | None = None, quiet: bool = False) -> dict:
    """Train the configured model on ``<run_dir>/preprocess/rois.parquet``; writes ``<run_dir>/pretrain/``.

    Returns the summary dict (also ``pretrain/summary.json`` on rank 0). Works under DDP if the process group
    is initialised by the caller (see :func:`main`).
    """
    run_dir = Path(run_dir)
    pcfg = cfg.pretrain
    di = dist_info()
    out_dir = run_dir / "pretrain"
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    fail = fail or (lambda case, msg, file=None: logger.warning("pretrain: case %s: %s", case, msg))
    device = select_device(pcfg.device, di.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    in_channels = 2 if cfg.preprocess.mask_channel else 1
    roi_zyx = tuple(int(n) for n in cfg.preprocess.roi_size_vox[::-1])

    rois_path = run_dir / "preprocess" / "rois.parquet"
    df = read_rois_index(rois_path)
    split = collect_items(df, cfg, roi_zyx, fail if di.is_main else (lambda *a, **k: None))
    info = split.info
    cfg_hash = training_hash(cfg, in_channels, roi_zyx)
    d_hash = data_hash(split, df)
    total_steps, budget_info = planned_steps(pcfg, len(split.train), di.world)
    train_codes = noise_codes([it.modality for it in split.train], pcfg.noise)
    val_codes = noise_codes([it.modality for it in split.val], pcfg.noise)

    # ---- resume or start fresh
    ckpt = None
    if resume and ckpt_path.exists():
        ckpt = read_torch(ckpt_path, CHECKPOINT_FORMAT)
        if ckpt.get("config_hash") != cfg_hash:
            raise TrainError(case_message(None, ckpt_path, f"checkpoint was written with another model/training config "
                                          f"(hash {str(ckpt.get('config_hash'))[:12]} vs {cfg_hash[:12]})",
                                          "restore that config, or run without --resume (or with --force) to start over"))
        if ckpt.get("data_hash") != d_hash:
            raise TrainError(case_message(None, ckpt_path, "checkpoint was trained on other preprocessed data (ROI index changed)",
                                          "run without --resume (or with --force) to start over"))
        if int(ckpt.get("world_size", 1)) != di.world:
            logger.warning("pretrain: resuming a %d-process checkpoint with %d processes: continues, but not bit-identical",
                           ckpt.get("world_size"), di.world)
    elif resume:
        logger.info("pretrain: --resume but no checkpoint at %s; starting from step 0", ckpt_path)
    if di.is_main and ckpt is None:
        for old in (ckpt_path, out_dir / "model.pt", out_dir / "summary.json"):
            old.unlink(missing_ok=True)
        for png in (out_dir / "previews").glob("*.png") if (out_dir / "previews").exists() else []:
            png.unlink()
    start_step = int(ckpt["step"]) if ckpt is not None else 0

    # ---- model, optimizer, schedule (inside a forked RNG: seeding never leaks to the caller)
    use_amp = pcfg.amp and device.type == "cuda"
    channels_last = pcfg.channels_last  # on CPU too: 1.7x the fp32 training throughput of the default model
    rng_devices = [device.index] if device.type == "cuda" else []
    prev_bench, prev_det = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=rng_devices):
        torch.random.default_generator.manual_seed(cfg.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed + di.rank)
            torch.backends.cudnn.benchmark = not pcfg.deterministic
            if pcfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            model = build_model(pcfg.model, in_channels, roi_zyx).to(device)
            n_params = count_parameters(model)
            if di.is_main:
                logger.info("pretrain: %s with %s parameters, input (%d, %s), device %s x%d, amp %s, channels_last %s",
                            pcfg.model.kind, f"{n_params:,}", in_channels, "x".join(map(str, roi_zyx)), device, di.world,
                            "bf16" if use_amp else "off", channels_last)
            if channels_last:
                model = model.to(memory_format=torch.channels_last_3d)
            opt = torch.optim.AdamW(model.parameters(), lr=pcfg.lr, weight_decay=pcfg.weight_decay,
                                    fused=device.type == "cuda")
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(pcfg.warmup_steps, total_steps))
            scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling; kept for the format
            early = _EarlyStop()
            stats = {"train_s": 0.0, "data_s": 0.0, "patches": 0}
            last_train: dict = {}
            last_val: dict = {}
            if ckpt is not None:
                unwrap(model).load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                scaler.load_state_dict(ckpt["scaler"])
                rng = ckpt["rng"]
                _set_rng_state(rng[di.rank] if di.rank < len(rng) else rng[0], device)
                e = ckpt["early"]
                early = _EarlyStop(float(e["best_loss"]), int(e["best_step"]), int(e["bad_evals"]), bool(e["stopped"]),
                                   ckpt.get("best_model"))
                stats = dict(ckpt["stats"])
                last_train, last_val = dict(ckpt.get("last_train") or {}), dict(ckpt.get("last_val") or {})
                logger.info("pretrain: resumed from %s at step %d", ckpt_path, start_step)
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
                if di.world > 1 else model

            # ---- data
            mode = pcfg.loader
            item_bytes = in_channels * math.prod(roi_zyx) * 4
            if mode == "auto":
                need = item_bytes * (len(split.train) + len(split.val))
                mode = "resident" if need < RESIDENT_FRACTION * _available_bytes(device) else "stream"
            reader = ItemReader(cfg.preprocess.mask_channel)
            resident = load_resident(split.train, reader, device) if mode == "resident" else None
            val_data = load_resident(split.val, reader, torch.device("cpu")) if split.val else None
            preview_src = (val_data[:1], val_codes[:1]) if val_data is not None else \
                (torch.from_numpy(reader.load(split.train[0]))[None], train_codes[:1])
            preview_mod = (split.val[0] if val_data is not None else split.train[0]).modality
            order = StepOrder(len(split.train), pcfg.batch_size, di.world, cfg.seed)
            gen = torch.Generator(device=device)
            autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
            metrics = MetricsLog(out_dir, start_step if ckpt is not None else None) if di.is_main else None

            def sync() -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)

            def preview(step: int) -> None:
                x = preview_src[0].to(device)
                g = torch.Generator(device=device)
                g.manual_seed(step_seed(cfg.seed, _VAL_SEED, 0, 1))
                noisy = corrupt(x, preview_src[1], pcfg.noise.sigma, g, **mask_kw)
                m = unwrap(ddp)
                was = m.training
                m.eval()
                with torch.no_grad(), autocast():
                    recon = m(noisy.contiguous(memory_format=torch.channels_last_3d) if channels_last else noisy).recon.float()
                m.train(was)
                clean = x[0, 0].cpu().numpy()
                save_preview(out_dir / "previews" / f"step_{step:07d}.png", clean, noisy[0, 0].cpu().numpy(),
                             recon[0, 0].cpu().numpy(), f"{pcfg.model.kind} step {step}",
                             display_window(preview_mod, clean, cfg.preprocess.normalise.model_dump()))

            def checkpoint(step: int) -> None:
                rng = [_rng_state(device)]
                if di.world > 1:
                    rng = [None] * di.world
                    dist.all_gather_object(rng, _rng_state(device))
                if not di.is_main:
                    return
                save_torch(ckpt_path, {
                    "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "step": step, "config_hash": cfg_hash,
                    "data_hash": d_hash, "world_size": di.world, "model_config": pcfg.model.model_dump(mode="json"),
                    "model": cpu_state_dict(ddp), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng,
                    "early": {"best_loss": early.best_loss, "best_step": early.best_step, "bad_evals": early.bad_evals,
                              "stopped": early.stopped},
                    "best_model": early.best_state, "stats": stats, "last_train": last_train, "last_val": last_val,
                })

            # ---- loop
            done = early.stopped or start_step >= total_steps
            params = [p for p in ddp.parameters() if p.requires_grad]
            step = start_step
            acc = torch.zeros(4, device=device, dtype=torch.float64)  # loss, recon, kl, sparse sums over the window
            win_steps, win_t0, win_data, win_other = 0, time.perf_counter(), 0.0, 0.0  # other: eval/preview/checkpoint
            # wall-clock budget: counts this process's time from here (a resumed run gets max_minutes again)
            deadline = time.monotonic() + 60.0 * pcfg.max_minutes if pcfg.max_minutes else None
            timed_out = False
            mask_kw = noise_settings(pcfg.noise)
            contract = pcfg.model.contractive
            contract_acc = 0.0  # contractive penalty summed over the window (this process)
            grad_norm = torch.zeros((), device=device)
            beta = 0.0
            batches = batch_stream(mode, split.train, train_codes, cfg.preprocess.mask_channel, order, start_step + 1,
                                   total_steps, di.rank, device, pcfg.num_workers, resident) if not done else iter(())
            ddp.train()
            progress = TrainProgress(total_steps, step, enabled=di.is_main, quiet=quiet)
            while not done:
                t0 = time.perf_counter()
                try:
                    x, codes = next(batches)
                except StopIteration:
                    break
                step += 1
                win_data += time.perf_counter() - t0
                gen.manual_seed(step_seed(cfg.seed, _STREAM_SEED, di.rank, step))
                if pcfg.augment:
                    x = augment_batch(x, gen)
                noisy = corrupt(x, codes, pcfg.noise.sigma, gen, **mask_kw)
                if channels_last:
                    noisy = noisy.contiguous(memory_format=torch.channels_last_3d)
                if contract.weight > 0:
                    noisy.requires_grad_(True)
                with autocast():
                    out = ddp(noisy, generator=gen)
                terms = compute_loss(out, x, pcfg, step)
                if contract.weight > 0:
                    penalty = contract.weight * jacobian_frobenius_sq(code_of(out), noisy, contract.projections, gen).mean()
                    terms = terms._replace(total=terms.total + penalty)
                    contract_acc += float(penalty.detach())
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, pcfg.grad_clip)
                opt.step()
                sched.step()
                acc += torch.stack([terms.total.detach(), terms.recon.detach(), terms.kl.detach(), terms.sparse.detach()]).double()
                beta = terms.beta
                win_steps += 1
                out_of_time = deadline is not None and time.monotonic() >= deadline
                if out_of_time and di.world > 1:  # every process stops at the same step
                    flag = torch.tensor(float(out_of_time), device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
                last_step = step == total_steps or out_of_time
                if out_of_time and not timed_out:
                    timed_out = True
                    logger.info("pretrain: max_minutes (%g) reached at step %d of %d", pcfg.max_minutes, step, total_steps)
                evaluating = bool(split.val) and (step % pcfg.eval_every == 0 or last_step)
                if step % pcfg.log_every == 0 or last_step or evaluating:
                    vals = acc.clone()
                    if di.world > 1:
                        dist.all_reduce(vals)
                    vals = (vals / (win_steps * di.world)).tolist()
                    sync()
                    elapsed = time.perf_counter() - win_t0 - win_other
                    n_patches = win_steps * pcfg.batch_size * di.world
                    stats["train_s"] += elapsed
                    stats["data_s"] += win_data
                    stats["patches"] += n_patches
                    if not math.isfinite(vals[0]):
                        raise TrainError(f"pretrain: loss became {vals[0]} at step {step} -> lower pretrain.lr, enable "
                                         "grad clipping or check the preprocessed intensities")
                    last_train = {"step": step, "epoch": round(order.epoch(step), 4), "split": "train", "loss": vals[0],
                                  "recon": vals[1], "kl": vals[2], "sparse": vals[3], "beta": beta,
                                  "contractive": contract_acc / max(win_steps, 1),
                                  "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                                  "patches_per_s": n_patches / max(elapsed, 1e-9),
                                  "data_wait_fraction": win_data / max(elapsed, 1e-9), "elapsed_s": stats["train_s"]}
                    if metrics is not None:
                        metrics.write(last_train)
                    acc.zero_()
                    contract_acc = 0.0
                    win_steps, win_data, win_other = 0, 0.0, 0.0
                    stop = torch.zeros((), device=device)
                    if evaluating and di.is_main:
                        last_val = {"step": step, "epoch": last_train["epoch"], "split": "val",
                                    **evaluate(unwrap(ddp), val_data, val_codes, cfg, device, autocast, channels_last)}
                        last_val["loss"] = last_val.pop("val_loss")
                        metrics.write(last_val)
                        if last_val["loss"] < early.best_loss:
                            early.best_loss, early.best_step, early.bad_evals = last_val["loss"], step, 0
                            if pcfg.early_stopping_patience > 0:
                                early.best_state = cpu_state_dict(ddp)
                        else:
                            early.bad_evals += 1
                        if pcfg.early_stopping_patience > 0 and early.bad_evals >= pcfg.early_stopping_patience:
                            early.stopped = True
                            stop.fill_(1.0)
                            logger.info("pretrain: early stop at step %d (best val loss %.5g at step %d)", step,
                                        early.best_loss, early.best_step)
                    if di.world > 1 and evaluating:
                        dist.broadcast(stop, 0)
                        early.stopped = bool(stop.item())
                    progress.report(step, last_train["epoch"], vals[0], last_train["patches_per_s"],
                                    last_train["data_wait_fraction"], last_val if evaluating and di.is_main else None)
                    win_t0 = time.perf_counter()  # the evaluation above is not training time
                t_other = time.perf_counter()
                if di.is_main and pcfg.preview_every and step % pcfg.preview_every == 0:
                    preview(step)
                if step % pcfg.checkpoint_every == 0 or last_step or early.stopped:
                    checkpoint(step)
                win_other += time.perf_counter() - t_other
                progress.advance(step)
                done = early.stopped or last_step
            progress.close()
            if ckpt is None and start_step == 0 and step == 0:
                raise TrainError("pretrain: no training step was run")

            # ---- final outputs (rank 0)
            summary: dict = {}
            if di.is_main:
                final_state = early.best_state if (pcfg.early_stopping_patience > 0 and early.best_state) else None
                extra = {"preprocess": cfg.preprocess.model_dump(mode="json"), "noise": pcfg.noise.model_dump(mode="json"),
                         "seed": cfg.seed, "data_hash": d_hash, "mask_channel": cfg.preprocess.mask_channel,
                         "modalities": sorted({it.modality for it in split.train}),
                         "weights": "best_val" if final_state is not None else "last"}
                save_model(out_dir / "model.pt", ddp, final_state, config_hash=cfg_hash, step=step, extra=extra)
                preview(step)
                diag = run_diagnostics(unwrap(ddp), final_state, split, val_data, val_codes, train_codes, resident, reader,
                                       cfg, device, metrics.rows, early.stopped, channels_last)
                atomic_write_text(out_dir / "diagnostics.json", json.dumps(diag, indent=1, default=str))
                from radae.util.hashing import file_sha256

                summary = {
                    "model": pcfg.model.kind, "n_params": n_params, "in_channels": in_channels, "roi_size_zyx": list(roi_zyx),
                    "latent_dim": pcfg.model.latent_dim, "device": str(device), "world_size": di.world,
                    "amp": "bf16" if use_amp else "off", "channels_last": channels_last, "loader": mode,
                    "steps_planned": total_steps, "steps_done": step, "budget": budget_info, "stopped_by_time": timed_out, "resumed_from_step": start_step if ckpt is not None else None,
                    "batch_size_per_process": pcfg.batch_size, "global_batch": pcfg.batch_size * di.world,
                    "epochs": round(order.epoch(step), 3), "stopped_early": early.stopped,
                    "best_step": early.best_step or None, "weights": extra["weights"],
                    **info,
                    "noise_models": {k: int((train_codes == i).sum()) for i, k in enumerate(NOISE_KINDS) if (train_codes == i).any()},
                    "final_train_loss": last_train.get("loss"), "final_val_loss": last_val.get("loss"),
                    "best_val_loss": early.best_loss if math.isfinite(early.best_loss) else None,
                    "val_psnr_noisy_db": last_val.get("psnr_noisy"), "val_psnr_recon_db": last_val.get("psnr_recon"),
                    "val_psnr_gain_db": last_val.get("psnr_gain_db"),
                    "converged": diag["convergence"]["converged"],
                    "denoise_gain_db_at_highest": diag["denoise_gain_db_at_highest"],
                    "patches_per_s": stats["patches"] / stats["train_s"] if stats["train_s"] > 0 else None,
                    "data_wait_fraction": stats["data_s"] / stats["train_s"] if stats["train_s"] > 0 else None,
                    "train_seconds": round(stats["train_s"], 3), "config_hash": cfg_hash, "data_hash": d_hash,
                    "model_sha256": file_sha256(out_dir / "model.pt"),
                }
                atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
                metrics.close()
                logger.info("pretrain: done at step %d; train loss %s, val PSNR %s -> %s dB", step,
                            _g(summary["final_train_loss"]), _g(summary["val_psnr_noisy_db"], ".2f"),
                            _g(summary["val_psnr_recon_db"], ".2f"))
            if di.world > 1:
                dist.barrier()
            return summary
        finally:
            torch.backends.cudnn.benchmark = prev_bench
            if pcfg.deterministic and device.type == "cuda":
                torch.use_deterministic_algorithms(prev_det)
