"""Noise models for denoising pretraining, applied per batch on the batch's device with an explicit generator.

Intensities are the preprocess stage's normalised units (CT: [hu_min, hu_max] -> [0, 1]; MR: z-score;
PET: SUV / suv_scale). ``sigma`` is the noise standard deviation in those units, drawn uniformly from
``noise.sigma`` per sample.

- Gaussian (CT): ``y = x + sigma * n``, n ~ N(0, 1). With the default CT window (1400 HU) sigma 0.05 is 70 HU.
- Rician (MR magnitude): ``y = sqrt((a + sigma n1)^2 + (sigma n2)^2)`` for signal amplitude a >= 0. The mean is
  biased upwards: E[y] = sigma sqrt(pi/2) L_{1/2}(-a^2 / (2 sigma^2)) (Laguerre polynomial; see
  :func:`rician_mean`), sigma sqrt(pi/2) for a = 0 (Rayleigh background). A z-scored MR image has no true
  zero, so a = x - min(x) per sample (the background is the dimmest tissue) and the minimum is added back.
- Poisson-like (PET): counts ~ Poisson(a / sigma^2), y = counts * sigma^2 with a = max(x, 0): mean a,
  variance sigma^2 a (signal-dependent, equal to a Gaussian of std sigma where a = 1, i.e. SUV = suv_scale).
- Masked volume (``kind: mask``, any modality): the ROI is tiled into cubes of ``mask_block_vox`` voxels and each
  cube is set to 0 with probability ``mask_ratio`` (masked-autoencoder-style corruption; the loss is on the clean
  volume, so the model must inpaint the missing blocks from context). ``sigma`` is not used by this kind.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import special
from torch import Tensor

from radae.config import NoiseConfig

NOISE_KINDS = ("none", "gaussian", "rician", "poisson", "mask")
NOISE_CODE = {k: i for i, k in enumerate(NOISE_KINDS)}
MODALITY_NOISE = {"CT": "gaussian", "MR": "rician", "PET": "poisson", "PT": "poisson"}


def noise_kind_for(modality: str, cfg: NoiseConfig) -> str:
    """Noise model for one lesion: the configured kind, or (``auto``) the modality's (Gaussian if unknown)."""
    if cfg.kind != "auto":
        return cfg.kind
    return MODALITY_NOISE.get(str(modality).upper(), "gaussian")


def noise_settings(cfg: NoiseConfig) -> dict:
    """The keyword arguments of :func:`corrupt` besides sigma (the ``mask`` kind's block settings)."""
    return {"mask_ratio": cfg.mask_ratio, "mask_block_vox": cfg.mask_block_vox}


def noise_codes(modalities, cfg: NoiseConfig) -> np.ndarray:
    """Integer code (index into NOISE_KINDS) per item, int64 ``(N,)``."""
    return np.asarray([NOISE_CODE[noise_kind_for(m, cfg)] for m in modalities], dtype=np.int64)


def _per_sample(sigma: Tensor | float, x: Tensor) -> Tensor:
    s = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
    return s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim else s


def gaussian(x: Tensor, sigma: Tensor | float, generator: torch.Generator | None) -> Tensor:
    """Additive white Gaussian noise; ``sigma`` scalar or per sample ``(B,)``."""
    s = _per_sample(sigma, x)
    n = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (x.float() + s * n).to(x.dtype)


def rician(x: Tensor, sigma: Tensor | float, generator: torch.Generator | None, floor: Tensor | float = 0.0) -> Tensor:
    """Magnitude of complex Gaussian noise on signal amplitude ``x - floor`` (clamped at 0); ``floor`` added back."""
    s = _per_sample(sigma, x)
    f = _per_sample(floor, x)
    a = (x.float() - f).clamp_min(0.0)
    n1 = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    n2 = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (torch.sqrt((a + s * n1) ** 2 + (s * n2) ** 2) + f).to(x.dtype)


def poisson_like(x: Tensor, sigma: Tensor | float, generator: torch.Generator | None) -> Tensor:
    """Counting noise with variance ``sigma^2 * x`` (mean preserved); ``sigma == 0`` leaves x unchanged."""
    s = _per_sample(sigma, x)
    a = x.float().clamp_min(0.0)
    scale = (s * s).clamp_min(1e-8)
    y = torch.poisson(a / scale, generator=generator) * scale
    return torch.where(s > 0, y, x.float()).to(x.dtype)


def block_mask(x: Tensor, ratio: Tensor | float, block_vox: int, generator: torch.Generator | None) -> Tensor:
    """Zero random cubes of ``block_vox`` voxels, each with probability ``ratio`` (scalar or per sample ``(B,)``)."""
    b = x.shape[0]
    grid = [max(1, -(-n // block_vox)) for n in x.shape[2:]]
    r = _per_sample(ratio, x)
    u = torch.rand((b, 1, *grid), generator=generator, device=x.device, dtype=torch.float32)
    keep = (u >= r).to(x.dtype)
    for dim, n in zip((2, 3, 4), x.shape[2:]):
        keep = keep.repeat_interleave(block_vox, dim=dim).narrow(dim, 0, n)
    return x * keep


def rician_mean(a, sigma):
    """Theoretical E[y] of Rician noise: sigma sqrt(pi/2) L_{1/2}(-a^2/(2 sigma^2)), numerically stable form.

    With u = a^2 / (4 sigma^2): L_{1/2}(-2u) = e^{-u} [(1 + 2u) I0(u) + 2u I1(u)] = (1 + 2u) i0e(u) + 2u i1e(u).
    """
    a, sigma = np.asarray(a, float), np.asarray(sigma, float)
    u = a**2 / (4 * sigma**2)
    return sigma * np.sqrt(np.pi / 2) * ((1 + 2 * u) * special.i0e(u) + 2 * u * special.i1e(u))


def corrupt(x: Tensor, codes, sigma_range: tuple[float, float], generator: torch.Generator, channel: int = 0,
            mask_ratio: float = 0.5, mask_block_vox: int = 4) -> Tensor:
    """Noisy copy of a batch ``(B, C, Z, Y, X)``: noise on ``channel`` only (a mask channel stays clean).

    ``codes``: per-sample noise kind (index into NOISE_KINDS), a CPU sequence so which models are present is
    known without a device sync. Draw order is fixed (sigma, then each present kind in NOISE_KINDS order), so the
    same generator state gives the same bytes. ``mask_ratio`` / ``mask_block_vox``: the ``mask`` kind's settings.
    """
    codes_np = np.asarray(codes, dtype=np.int64)
    b = x.shape[0]
    lo, hi = sigma_range
    sigma = lo + (hi - lo) * torch.rand(b, generator=generator, device=x.device, dtype=torch.float32)
    img = x[:, channel : channel + 1]
    out = img.clone()
    code_t = torch.as_tensor(codes_np, device=x.device).reshape(-1, 1, 1, 1, 1)
    present = set(codes_np.tolist())
    if NOISE_CODE["gaussian"] in present:
        out = torch.where(code_t == NOISE_CODE["gaussian"], gaussian(img, sigma, generator), out)
    if NOISE_CODE["rician"] in present:
        floor = img.flatten(1).amin(1)
        out = torch.where(code_t == NOISE_CODE["rician"], rician(img, sigma, generator, floor), out)
    if NOISE_CODE["poisson"] in present:
        out = torch.where(code_t == NOISE_CODE["poisson"], poisson_like(img, sigma, generator), out)
    if NOISE_CODE["mask"] in present:
        out = torch.where(code_t == NOISE_CODE["mask"], block_mask(img, mask_ratio, mask_block_vox, generator), out)
    if x.shape[1] == 1:
        return out
    parts = [x[:, :channel], out, x[:, channel + 1 :]]
    return torch.cat(parts, dim=1)


def noise_levels(sigma: tuple[float, float]) -> list[float]:
    lo, hi = float(sigma[0]), float(sigma[1])
    return [lo] if hi == lo else [lo, hi]


def run_noise_levels(noise: dict) -> list[float]:
    """The levels a run's noise model is probed at: sigma's ends, or the mask ratio for ``kind: mask``; none for none."""
    if noise.get("kind") in ("none", None):
        return []
    if noise.get("kind") == "mask":
        return [float(noise.get("mask_ratio", 0.5))]
    return noise_levels(tuple(noise["sigma"]))
