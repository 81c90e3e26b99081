"""Learned features: the trained encoder's latent vector per lesion ROI (VAE: mu; autoencoder: the bottleneck).

Input is exactly what pretraining saw: the ROI ``.npz`` of the preprocess cache (``rois.parquet`` -> ``roi_path``),
loaded by :class:`radae.preprocess.items.ItemReader` (the training loader itself), with the lesion mask as second channel when
the model was trained with one (``meta["in_channels"] == 2``). No second preprocessing implementation exists.

Inference is batched (``extract.latent.batch_size``) in eval mode under ``torch.inference_mode``, on
``extract.latent.device``. With ``tta_flips`` each ROI is encoded in all 8 combinations of flips along z, y and x
and the latents are averaged (a flip-invariant feature; 8x the compute). The encoder runs in the channels-last-3d layout
(``channels_last``, same fp32 maths) and, with ``precision: bf16``, under bfloat16 autocast (about 2x faster on CPUs
with AVX512-BF16/AMX and on GPUs; latents within ~1 % of fp32). On CPU the result is deterministic: the same model,
ROIs, batch size and settings give the same bytes.

Columns: ``latent_000 ... latent_{D-1}`` (float64 holding the float32 values exactly), keyed by case_id and
patient_id.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from radae.runfolder import is_latent_column, latent_columns
from radae.config import LatentConfig, PipelineConfig
from radae.models.device import native_bf16, select_device
from radae.preprocess.items import Item, ItemReader
from radae.util.errors import ExtractError, RadaeError, case_message

logger = logging.getLogger(__name__)

_SPATIAL_DIMS = (2, 3, 4)  # (B, C, Z, Y, X)



def flip_sets(tta_flips: bool) -> list[tuple[int, ...]]:
    """The flips to average over: none, or all 8 subsets of the spatial axes."""
    if not tta_flips:
        return [()]
    return [c for r in range(4) for c in itertools.combinations(_SPATIAL_DIMS, r)]


@torch.inference_mode()
def encode_batch(model: torch.nn.Module, x: torch.Tensor, tta_flips: bool = False, precision: str = "fp32",
                 channels_last: bool = False) -> torch.Tensor:
    """``(B, C, Z, Y, X)`` -> ``(B, latent_dim)`` float32: ``model.encode`` (mean over flips with ``tta_flips``).

    ``precision="bf16"`` runs the encoder under bfloat16 autocast; ``channels_last`` feeds the input in the
    channels-last-3d layout (the model should be converted too: :func:`prepare_model`).
    """
    flips = flip_sets(tta_flips)
    acc = None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for dims in flips:
            xi = x.flip(dims) if dims else x
            if channels_last:
                xi = xi.contiguous(memory_format=torch.channels_last_3d)
            z = model.encode(xi).float()
            acc = z if acc is None else acc + z
    return acc / len(flips)


@dataclass(frozen=True)
class PreparedModel:
    """An encoder ready for inference (:func:`prepare_model`) and the layout it was prepared for."""

    module: torch.nn.Module
    channels_last: bool


def prepare_model(model: torch.nn.Module | PreparedModel, cfg: LatentConfig) -> PreparedModel:
    """The model to encode with: an eval-mode copy with batch norm folded into the convolutions
    (:func:`radae.models.inference.fold_batch_norm`), in the channels-last-3d layout when ``cfg.channels_last``.

    A :class:`PreparedModel` for the same layout comes back as it is (no second copy), so callers that encode many
    small batches prepare once and pass the prepared model; one for another layout is prepared again from its module.
    """
    from radae.models.inference import fold_batch_norm

    if isinstance(model, PreparedModel):
        if model.channels_last == cfg.channels_last:
            return model
        model = model.module
    model = fold_batch_norm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return PreparedModel(model, cfg.channels_last)


@dataclass(frozen=True)
class LatentResult:
    table: pd.DataFrame  # case_id, patient_id, latent_###
    failures: list[tuple[str, str, str]]  # (case_id, message, file)
    seconds: float


def _roi_reader(in_channels: int):
    reader = ItemReader(mask_channel=in_channels == 2)

    def load(row: dict) -> tuple[np.ndarray, np.ndarray]:
        arr, mask = reader.load_with_mask(Item(str(row["case_id"]), str(row["patient_id"]), str(row.get("modality", "")),
                                               str(row["roi_path"]), -1))
        return arr, mask

    return load


def feature_columns(meta: dict, heads: Iterable[str]) -> list[str]:
    """Every feature column of ``latent.parquet`` for a model and the configured heads (:mod:`radae.features.heads`)."""
    from radae.features import heads as hd

    heads = set(heads)
    cols = latent_columns(int(meta["latent_dim"]))
    if "pooled" in heads:
        cols += hd.pooled_columns(hd.level_channels(meta))
    if "anomaly" in heads:
        cols += hd.anomaly_columns(meta)
    if "random" in heads:
        cols += hd.random_columns(meta)
    return cols


class _Encoders:
    """The prepared trained model (and, with the ``random`` head, its untrained twin) plus what each head needs."""

    def __init__(self, model: torch.nn.Module | PreparedModel, meta: dict, cfg: LatentConfig, device: torch.device):
        from radae.features import heads as hd

        self.cfg, self.meta, self.heads = cfg, meta, set(cfg.heads)
        self.model = prepare_model(model, cfg).module
        self.seed = int((meta.get("extra") or {}).get("seed", 0))
        self.random = (prepare_model(hd.random_model(meta, self.seed, device), cfg).module if "random" in self.heads
                       else None)

    def features(self, x: torch.Tensor, mask: torch.Tensor, cases: list[str], modalities: list[str]) -> np.ndarray:
        from radae.features import heads as hd

        one_pass = "pooled" in self.heads and not self.cfg.tta_flips  # the bottleneck comes with the level maps
        parts = [] if one_pass else [encode_batch(self.model, x, self.cfg.tta_flips, self.cfg.precision,
                                                  self.cfg.channels_last)]
        if self.heads & {"pooled", "anomaly", "random"}:
            xin = x.contiguous(memory_format=torch.channels_last_3d) if self.cfg.channels_last else x
            with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16,
                                                        enabled=self.cfg.precision == "bf16"):
                if "pooled" in self.heads:
                    self.model.check_input(xin)
                    maps, code = hd.encoder_maps(self.model, xin)
                    parts += ([code.float()] if one_pass else []) + [hd.pool_maps(maps, mask)]
                if "anomaly" in self.heads:
                    parts.append(torch.from_numpy(hd.anomaly_features(self.model, xin, mask, cases, modalities,
                                                                      self.meta, self.seed)).float())
                if self.random is not None:
                    maps, code = hd.encoder_maps(self.random, xin)
                    parts += [code.float(), hd.pool_maps(maps, mask)]
        return np.concatenate([p.float().cpu().numpy().astype(np.float64) if isinstance(p, torch.Tensor) else p
                               for p in parts], axis=1)


def iter_latents(rows: Iterable[dict], model: torch.nn.Module | PreparedModel, meta: dict, cfg: LatentConfig,
                 device: torch.device, progress: Callable | None = None) -> Iterator[tuple[pd.DataFrame, list[tuple[str, str, str]]]]:
    """Latents (and the configured heads' features) batch by batch, in the order of ``rows``:
    ``(table of the batch's lesions, failures since the last batch)``.

    Only one batch is in memory. Unreadable or mis-shaped ROIs and non-finite latents become failures
    ``(case_id, message, file)``; the last item may have an empty table and carry only failures. A head value
    that is undefined (the mask-restricted error of a seed-point lesion without a mask) is NaN, not a failure.
    """
    in_ch = int(meta["in_channels"])
    roi_zyx = tuple(int(n) for n in meta["roi_size_zyx"])
    if cfg.precision == "bf16" and not native_bf16(device):
        logger.warning("extract.latent.precision bf16: this CPU has no native bf16 (oneDNN), so bf16 convolutions are "
                       "emulated, ~50-100x slower than fp32 -> set extract.latent.precision: fp32")
    load = _roi_reader(in_ch)
    cols = feature_columns(meta, cfg.heads)
    n_latent = int(meta["latent_dim"])
    failures: list[tuple[str, str, str]] = []
    batch: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    keys: list[tuple[str, str, str]] = []
    enc = _Encoders(model, meta, cfg, device)

    def flush() -> pd.DataFrame:
        if not batch:
            return pd.DataFrame(columns=["case_id", "patient_id", *cols])
        z = enc.features(torch.from_numpy(np.stack(batch)).to(device), torch.from_numpy(np.stack(masks)).to(device),
                         [k[0] for k in keys], [k[2] for k in keys])
        bad = ~np.isfinite(z[:, :n_latent]).all(axis=1)
        for i in np.flatnonzero(bad):
            failures.append((keys[i][0], case_message(keys[i][0], None, "the encoder returned non-finite latent values",
                                                      "the model diverged; re-run pretrain"), ""))
        table = pd.DataFrame(z[~bad], columns=cols)
        kept = [k for k, b in zip(keys, bad) if not b]
        table.insert(0, "patient_id", [k[1] for k in kept])
        table.insert(0, "case_id", [k[0] for k in kept])
        batch.clear()
        masks.clear()
        keys.clear()
        return table

    def emit():
        table = flush()
        out = (table, list(failures))
        failures.clear()
        return out

    for row in (progress(rows) if progress is not None else rows):
        case = str(row["case_id"])
        try:
            arr, mask = load(row)
        except RadaeError as e:
            failures.append((case, str(e), str(row.get("roi_path", ""))))
            continue
        except (OSError, ValueError, KeyError) as e:
            failures.append((case, case_message(case, row.get("roi_path"), f"cannot read ROI ({type(e).__name__}: {e})",
                                                "delete the preprocess cache entry and re-run preprocess"), str(row.get("roi_path", ""))))
            continue
        if tuple(arr.shape[1:]) != roi_zyx:
            failures.append((case, case_message(case, row["roi_path"], f"ROI is {list(arr.shape[1:])} (z,y,x) but the model was "
                                                f"trained on {list(roi_zyx)}", "re-run pretrain after changing preprocess.roi_size_vox"),
                             str(row["roi_path"])))
            continue
        batch.append(arr)
        masks.append(mask)
        keys.append((case, str(row["patient_id"]), str(row.get("modality", ""))))
        if len(batch) >= cfg.batch_size:
            yield emit()
    if batch or failures:
        yield emit()


def extract_latents(rows: list[dict], model: torch.nn.Module | PreparedModel, meta: dict, cfg: LatentConfig,
                    device: torch.device, progress: Callable | None = None) -> LatentResult:
    """Latents of every ROI in ``rows`` (rois.parquet records) as one table (:func:`iter_latents`, collected)."""
    import time

    t0 = time.perf_counter()
    tables, failures = [], []
    for table, failed in iter_latents(rows, model, meta, cfg, device, progress):
        if len(table):
            tables.append(table)
        failures.extend(failed)
    cols = feature_columns(meta, cfg.heads)
    table = (pd.concat(tables, ignore_index=True) if tables else
             pd.DataFrame({"case_id": [], "patient_id": [], **{c: pd.Series([], dtype=np.float64) for c in cols}}))
    return LatentResult(table, failures, time.perf_counter() - t0)


def weights_sha256(model: torch.nn.Module, meta: dict) -> str:
    """sha256 of the model's content: stored model config, input layout and every tensor (name, dtype, shape, bytes).

    Unlike the file hash it does not depend on how ``model.pt`` was serialised, so equal weights give equal hashes.
    """
    import hashlib
    import json

    h = hashlib.sha256(json.dumps({"model_config": meta.get("model_config"), "in_channels": meta.get("in_channels"),
                                   "roi_size_zyx": list(meta.get("roi_size_zyx", ()))}, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def load_model(run_dir: Path, cfg: LatentConfig):
    """(model, meta, device) from ``<run>/pretrain/model.pt``; ExtractError if it is missing."""
    from radae.models import load_trained

    path = Path(run_dir) / "pretrain" / "model.pt"
    if not path.is_file():
        raise ExtractError(case_message(None, path, "no trained model", "run the pretrain stage first, or set "
                                        "extract.latent.enabled: false"))
    device = select_device(cfg.device, what="extract.latent.device", error=ExtractError)
    model, meta = load_trained(path, device=device)
    return model, meta, device


# ----------------------------------------------------------------------------- robustness hook (benchmark)
def robustness_extractor(cfg: PipelineConfig, run_dir: Path):
    """``fn(roi_index_row) -> {"learned": {...}, "handcrafted": {...}}`` for the benchmark's perturbation study.

    Loads the model and validates the PyRadiomics parameters once. The handcrafted part always runs on the row's
    resampled lesion crop (``radiomics_image``/``radiomics_mask``): a perturbed lesion has no original-grid file.
    """
    from radae.features import handcrafted

    ecfg = cfg.extract
    model = meta = device = None
    lcfg = ecfg.latent.model_copy(update={"heads": ()})  # the study compares the bottleneck with PyRadiomics
    if ecfg.latent.enabled:
        model, meta, device = load_model(run_dir, ecfg.latent)
        model = prepare_model(model, ecfg.latent)  # once: each lesion below is its own extract_latents call
    specs: dict[str, handcrafted.RadiomicsSpec] = {}

    def spec_for(modality: str) -> handcrafted.RadiomicsSpec:
        if modality not in specs:
            path = ecfg.radiomics.params or handcrafted.shipped_params_path(modality)
            params = handcrafted.read_params(path)
            (params.get("setting") or {}).pop("resampledPixelSpacing", None)  # the crop is already resampled
            specs[modality] = handcrafted.build_spec(params, source=str(path), grid="resampled",
                                                     image_types=ecfg.radiomics.image_types)
        return specs[modality]

    def extract(row: dict) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"learned": {}, "handcrafted": {}}
        if model is not None:
            res = extract_latents([row], model, meta, lcfg, device)
            if res.failures:
                raise ExtractError(res.failures[0][1])
            out["learned"] = {c: float(res.table[c].iloc[0]) for c in res.table.columns if is_latent_column(c)}
        if ecfg.radiomics.enabled:
            out["handcrafted"] = handcrafted.lesion_features_from_roi_row(row, spec_for(str(row.get("modality", ""))))
        return out

    return extract
