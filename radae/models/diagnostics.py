"""Did pretraining work? ``pretrain/diagnostics.json``: denoising quality against simple baselines, and convergence.

Computed once at the end of pretraining on the validation items (the training items when there is no validation
split), with the weights the run keeps (best validation loss or last), in eval mode, with a fixed seeded noise draw.

Per noise level of the run's noise model (``noise.sigma``'s low and high end; the mask ratio for ``kind: mask``;
plus ``clean`` = the uncorrupted input) and per image, then averaged over images (image channel only):

- ``noisy``: the corrupted input itself (what the encoder sees);
- ``recon``: the model's reconstruction of the corrupted input, compared with the clean input;
- ``blur``: a Gaussian blur (sigma 1 voxel) of the corrupted input: the cheapest denoiser;
- ``mean_image``: the per-voxel mean of the training items (a constant prediction: what a model that learned
  nothing but the average would output).

each as ``psnr_db`` (10 log10(R^2 / MSE), R = the clean image's range) and ``ssim`` (3D SSIM,
:func:`radae.models.losses.ssim3d`). ``denoise_gain_db = recon - noisy`` (> 0: the model removes noise).

Convergence (``converged``), the documented rule:

1. at least :data:`MIN_EVALS` validation evaluations were made, and
2. the validation loss has stopped falling: early stopping ended the run (its patience ran out), or the least-squares
   slope of the last :data:`SLOPE_WINDOW` validation losses, times the steps they span, is at most
   :data:`PLATEAU_REL` of their mean (the loss would fall by less than 2 % over that window), and
3. the model beats the mean image on clean input (``recon`` PSNR > ``mean_image`` PSNR at ``clean``).

A run that fails 1 or 2 was stopped while still improving: raise ``pretrain.steps`` / ``epochs`` / ``max_minutes``.
A run that fails 3 learned no more than the average ROI.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor

from radae.models.losses import psnr, ssim3d
from radae.models.noise import corrupt

MIN_EVALS = 3
SLOPE_WINDOW = 4
PLATEAU_REL = 0.02
BLUR_SIGMA_VOX = 1.0
BASELINES = ("noisy", "recon", "blur", "mean_image")


def levels_of(noise: dict) -> list[tuple[str, float]]:
    """``[(name, level)]``: the ends of ``sigma`` (``mask_ratio`` for the mask kind); [] when the kind is none."""
    from radae.models.noise import run_noise_levels

    return [(f"{'ratio' if noise.get('kind') == 'mask' else 'sigma'}={v:g}", v) for v in run_noise_levels(noise)]


def val_loss_trend(history: list[tuple[int, float]]) -> dict:
    """Least-squares slope of the last SLOPE_WINDOW validation losses, per step and relative to their mean over the
    steps they span (negative: still falling)."""
    pts = [(s, v) for s, v in history if v is not None and math.isfinite(v)][-SLOPE_WINDOW:]
    if len(pts) < 2:
        return {"n_evals": len(history), "slope_per_step": None, "relative_change": None}
    steps = np.asarray([p[0] for p in pts], float)
    vals = np.asarray([p[1] for p in pts], float)
    slope = float(np.polyfit(steps, vals, 1)[0])
    rel = slope * float(steps[-1] - steps[0]) / max(float(np.mean(vals)), 1e-12)
    return {"n_evals": len(history), "slope_per_step": slope, "relative_change": rel}


def convergence(history: list[tuple[int, float]], stopped_early: bool, clean: dict) -> dict:
    trend = val_loss_trend(history)
    reasons = []
    if trend["n_evals"] < MIN_EVALS:
        reasons.append(f"only {trend['n_evals']} validation evaluation(s) (need >= {MIN_EVALS})")
    plateau = stopped_early or (trend["relative_change"] is not None and trend["relative_change"] >= -PLATEAU_REL)
    if not plateau and trend["relative_change"] is not None:
        reasons.append(f"validation loss still falling ({100 * trend['relative_change']:.1f} % over the last "
                       f"{min(SLOPE_WINDOW, trend['n_evals'])} evaluations)")
    beats_mean = clean["recon"]["psnr_db"] > clean["mean_image"]["psnr_db"]
    if not beats_mean:
        reasons.append(f"reconstruction PSNR {clean['recon']['psnr_db']:.2f} dB does not beat the mean image "
                       f"({clean['mean_image']['psnr_db']:.2f} dB)")
    return {**trend, "stopped_early": bool(stopped_early), "plateau": bool(plateau), "beats_mean_image": bool(beats_mean),
            "converged": not reasons, "reasons": reasons,
            "rule": f">= {MIN_EVALS} evaluations; early stop or the last {SLOPE_WINDOW} val losses fall by < "
                    f"{100 * PLATEAU_REL:g} % over their span; recon PSNR > mean-image PSNR on clean input"}


def _scores(pred: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
    return psnr(pred[:, :1], clean[:, :1]), ssim3d(pred[:, :1].float(), clean[:, :1].float())


def _blur(x: Tensor) -> Tensor:
    arr = x[:, :1].float().cpu().numpy()
    out = np.stack([gaussian_filter(a[0], BLUR_SIGMA_VOX, mode="nearest")[None] for a in arr])
    return torch.from_numpy(out).to(x.device)


@torch.no_grad()
def denoising_table(model: torch.nn.Module, data: Tensor, codes: np.ndarray, mean_image: Tensor, noise: dict, seed: int,
                    device: torch.device, batch_size: int, channels_last: bool = False) -> dict:
    """``{level: {baseline: {psnr_db, ssim}, "denoise_gain_db": ...}}`` averaged over the items of ``data``."""
    from radae.config import NoiseConfig
    from radae.models.noise import noise_settings

    ncfg = NoiseConfig(**noise)
    was = model.training
    model.eval()
    levels = [("clean", None)] + levels_of(noise)
    sums: dict[str, dict[str, list[Tensor]]] = {name: {b: [] for b in BASELINES} for name, _ in levels}
    ssims: dict[str, dict[str, list[Tensor]]] = {name: {b: [] for b in BASELINES} for name, _ in levels}
    for li, (name, level) in enumerate(levels):
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed) * 1009 + 17 * li + 5)
        for start in range(0, data.shape[0], batch_size):
            x = data[start:start + batch_size].to(device)
            if level is None:
                noisy = x
            else:
                kw = {**noise_settings(ncfg), **({"mask_ratio": level} if ncfg.kind == "mask" else {})}
                noisy = corrupt(x, codes[start:start + x.shape[0]], (level, level), gen, **kw)
            inp = noisy.contiguous(memory_format=torch.channels_last_3d) if channels_last else noisy
            recon = model(inp).recon.float()
            preds = {"noisy": noisy, "recon": recon, "blur": _blur(noisy),
                     "mean_image": mean_image.to(device)[None].expand_as(x)}
            for b, pred in preds.items():
                p, s = _scores(pred, x)
                sums[name][b].append(p.cpu())
                ssims[name][b].append(s.cpu())
    model.train(was)
    table = {}
    for name, _ in levels:
        row = {b: {"psnr_db": float(torch.cat(sums[name][b]).mean()), "ssim": float(torch.cat(ssims[name][b]).mean())}
               for b in BASELINES}
        row["gain_over_blur_db"] = row["recon"]["psnr_db"] - row["blur"]["psnr_db"]
        if name == "clean":  # the input is the target: no noise to remove
            row["noisy"], row["denoise_gain_db"] = None, None
        else:
            row["denoise_gain_db"] = row["recon"]["psnr_db"] - row["noisy"]["psnr_db"]
        table[name] = row
    return table


def build(model: torch.nn.Module, data: Tensor, codes: np.ndarray, mean_image: Tensor, noise: dict, seed: int,
          device: torch.device, batch_size: int, history: list[tuple[int, float]], stopped_early: bool,
          split: str, channels_last: bool = False) -> dict:
    """The whole ``diagnostics.json`` document."""
    table = denoising_table(model, data, codes, mean_image, noise, seed, device, batch_size, channels_last)
    levels = [k for k in table if k != "clean"]
    highest = levels[-1] if levels else None
    return {"items": int(data.shape[0]), "split": split, "noise": noise, "levels": table,
            "highest_level": highest,
            "denoise_gain_db_at_highest": table[highest]["denoise_gain_db"] if highest else None,
            "convergence": convergence(history, stopped_early, table["clean"]),
            "val_loss_history": [[int(s), float(v)] for s, v in history]}
