"""Feature heads beyond the bottleneck: multi-scale pooling, reconstruction error, and an untrained-encoder control.

All heads read the same ROI the encoder was trained on (``(B, C, Z, Y, X)``, normalised) plus the ROI's lesion mask
``(B, Z, Y, X)`` (0/1; all zeros for seed-point cases).

- ``pooled`` (feature set ``learned_pooled``): for every encoder level ``l`` with ``C_l`` channels, the global
  average, the global max and the mask-weighted average of the level's feature map (the mask resampled to the
  level's grid by trilinear area averaging, so a voxel's weight is the lesion fraction it covers). ``3 * sum C_l``
  columns ``pooled_l{l}_{avg|max|mask}_{c:03d}``: the multi-scale, translation-robust deep-feature convention of
  fmcib-style extractors. Where a lesion covers no voxel of a level the mask average falls back to the global one.
- ``anomaly`` (feature set ``anomaly``): reconstruction error per lesion, ``anomaly_{roi|mask}_{mse|mae}_{level}``
  for the clean input and for each noise level of the run's noise model (``clean``, ``s0``, ``s1``: the low and
  high end of ``noise.sigma``, each with a fixed per-lesion noise draw seeded by (seed, case_id)); for the VAE also
  the per-lesion ELBO terms on the clean input: ``anomaly_vae_kl`` (KL(q(z|x) || N(0, I)), nats) and
  ``anomaly_vae_recon_sse`` (sum of squared errors of the mean reconstruction). A lesion the model reconstructs
  badly is unusual for the training distribution.
- ``random`` (feature sets ``random_encoder`` and ``random_pooled``): the same architecture and the bottleneck /
  pooled heads with seeded, untrained weights (PyTorch's default initialisation under ``torch.manual_seed(seed)``):
  the control that shows whether *pretraining* adds anything beyond the architecture and the pooling.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from radae.models.noise import NOISE_CODE, corrupt, noise_kind_for, noise_settings, run_noise_levels

HEADS = ("pooled", "anomaly", "random")
POOL_STATS = ("avg", "max", "mask")
REGIONS = ("roi", "mask")
ERRORS = ("mse", "mae")


def _noise(meta: dict) -> dict:
    """The run's noise model as stored with the trained model (``extra.noise``); none when absent."""
    return dict((meta.get("extra") or {}).get("noise") or {"kind": "none", "sigma": [0.0, 0.0]})


def level_channels(meta: dict) -> list[int]:
    return [int(c) for c in meta["model_config"]["channels"]]


def pooled_columns(channels: list[int], prefix: str = "pooled") -> list[str]:
    return [f"{prefix}_l{lvl}_{stat}_{c:03d}" for lvl, n in enumerate(channels) for stat in POOL_STATS for c in range(n)]


def anomaly_columns(meta: dict) -> list[str]:
    levels = ["clean"] + [f"s{i}" for i in range(len(run_noise_levels(_noise(meta))))]
    cols = [f"anomaly_{r}_{e}_{lv}" for lv in levels for r in REGIONS for e in ERRORS]
    if meta.get("kind") == "vae":
        cols += ["anomaly_vae_kl", "anomaly_vae_recon_sse"]
    return cols


def random_columns(meta: dict) -> list[str]:
    return [f"random_latent_{i:03d}" for i in range(int(meta["latent_dim"]))] + pooled_columns(level_channels(meta), "random_pooled")


def encoder_maps(model: torch.nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """Every encoder level's feature map and the bottleneck code (AE: z; VAE: mu), one pass."""
    maps = []
    h = x
    for level in model.encoder.levels:
        h = level(h)
        maps.append(h)
    code = model.to_code(h)
    if getattr(model, "code_factor", 1) == 2:
        code = code.chunk(2, dim=1)[0]
    return maps, code


def pool_maps(maps: list[Tensor], mask: Tensor) -> Tensor:
    """``(B, 3 * sum C_l)``: per level [avg | max | mask-weighted avg] over space, in :func:`pooled_columns` order."""
    out = []
    m = mask.float()[:, None]
    for h in maps:
        h = h.float()
        avg = h.mean(dim=(2, 3, 4))
        mx = h.amax(dim=(2, 3, 4))
        w = F.adaptive_avg_pool3d(m, h.shape[2:]) if tuple(m.shape[2:]) != tuple(h.shape[2:]) else m
        wsum = w.sum(dim=(2, 3, 4))
        masked = (h * w).sum(dim=(2, 3, 4)) / wsum.clamp_min(1e-12)
        masked = torch.where(wsum > 1e-12, masked, avg)
        out += [avg, mx, masked]
    return torch.cat(out, dim=1)


def lesion_seed(seed: int, case_id: str) -> int:
    return (int(seed) & 0xFFFFFFFF) << 32 | zlib.crc32(str(case_id).encode())


def _errors(recon: Tensor, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
    d = recon[:, :1].float() - x[:, :1].float()
    m = mask.float()[:, None]
    n_in = m.sum(dim=(1, 2, 3, 4))
    out = {}
    for err, fn in (("mse", torch.square), ("mae", torch.abs)):
        e = fn(d)
        out[f"roi_{err}"] = e.mean(dim=(1, 2, 3, 4))
        inside = (e * m).sum(dim=(1, 2, 3, 4)) / n_in.clamp_min(1)
        out[f"mask_{err}"] = torch.where(n_in > 0, inside, torch.full_like(inside, float("nan")))
    return out


@torch.inference_mode()
def anomaly_features(model: torch.nn.Module, x: Tensor, mask: Tensor, case_ids: list[str], modalities: list[str],
                     meta: dict, seed: int) -> np.ndarray:
    """``(B, len(anomaly_columns(meta)))`` float64; noise per lesion from its own generator (batch-independent)."""
    ncfg = _noise(meta)
    inputs = [("clean", x)]
    levels = run_noise_levels(ncfg)
    if levels:
        from radae.config import NoiseConfig

        cfg = NoiseConfig(**ncfg)
        codes = [NOISE_CODE[noise_kind_for(m, cfg)] for m in modalities]
        for i, s in enumerate(levels):
            noisy = []
            kw = {**noise_settings(cfg), **({"mask_ratio": s} if cfg.kind == "mask" else {})}
            for b in range(x.shape[0]):
                g = torch.Generator(device=x.device)
                g.manual_seed(lesion_seed(seed + 7919 * (i + 1), case_ids[b]))
                noisy.append(corrupt(x[b:b + 1], [codes[b]], (s, s), g, **kw))
            inputs.append((f"s{i}", torch.cat(noisy)))
    cols: list[Tensor] = []
    vae_terms: list[Tensor] = []
    for name, inp in inputs:
        out = model(inp)
        errs = _errors(out.recon, x, mask)
        cols += [errs[f"{r}_{e}"] for r in REGIONS for e in ERRORS]
        if name == "clean" and meta.get("kind") == "vae":
            mu, logvar = out.mu.float(), out.logvar.float()
            kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())).sum(1)
            sse = (out.recon[:, :1].float() - x[:, :1].float()).pow(2).sum(dim=(1, 2, 3, 4))
            vae_terms = [kl, sse]
    return torch.stack(cols + vae_terms, dim=1).double().cpu().numpy()


def random_model(meta: dict, seed: int, device: torch.device) -> torch.nn.Module:
    """The trained model's architecture with seeded, untrained weights (eval mode; batch norm at its initial stats)."""
    from radae.config import ModelConfig
    from radae.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_model(ModelConfig(**meta["model_config"]), int(meta["in_channels"]),
                            tuple(int(n) for n in meta["roi_size_zyx"]))
    return model.to(device).eval()


def dictionary_rows(columns: list[str], meta: dict) -> list[dict]:
    """Data-dictionary rows (table latent) for the head columns: family = the feature set that uses them."""
    rows = []
    filt = "normalised ROI from radae's preprocessing" + (" + mask channel" if meta.get("in_channels") == 2 else "")
    for col in columns:
        parts = col.split("_")
        if col.startswith("pooled_") or col.startswith("random_pooled_"):
            lvl, stat, ch = parts[-3], parts[-2], int(parts[-1])
            what = {"avg": "global average", "max": "global maximum", "mask": "lesion-mask-weighted average"}[stat]
            whose = "untrained (seeded random) encoder" if col.startswith("random_") else "trained encoder"
            fam = "random_pooled" if col.startswith("random_") else "learned_pooled"
            desc = f"{what} of channel {ch} of encoder level {lvl[1:]}'s feature map ({whose})."
        elif col.startswith("random_latent_"):
            fam, desc = "random_encoder", f"Bottleneck value {int(parts[-1])} of the untrained (seeded random) encoder: the pretraining control."
        elif col.startswith("anomaly_vae_"):
            fam = "anomaly"
            desc = ("KL(q(z|x) || N(0, I)) of the lesion's clean ROI, nats" if col.endswith("_kl")
                    else "sum of squared reconstruction errors of the clean ROI (VAE mean reconstruction)")
        else:
            fam = "anomaly"
            region, err, level = parts[1], parts[2], parts[3]
            where = "over the whole ROI" if region == "roi" else "inside the lesion mask"
            noise = _noise(meta)
            what = "mask ratio" if noise.get("kind") == "mask" else "noise sigma"
            inp = "the clean ROI" if level == "clean" else \
                f"the ROI with {what} {run_noise_levels(noise)[int(level[1:])]:g} (fixed seeded draw)"
            desc = f"reconstruction {'mean squared' if err == 'mse' else 'mean absolute'} error {where}, input {inp}."
        rows.append({"table": "latent", "feature": col, "family": fam, "image_type": "roi", "filter": filt,
                     "units": "1" if not col.endswith("_kl") else "nats", "description": desc[0].upper() + desc[1:]})
    return rows
