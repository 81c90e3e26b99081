"""Training objectives and image-quality metrics. All losses return float32 scalars averaged over the batch.

Reconstruction (``pretrain.loss``), ``x`` = reconstruction, ``y`` = clean target, N voxels:
- ``mse``: (1/N) sum (x - y)^2
- ``l1``: (1/N) sum |x - y|
- ``ssim_mse``: w * (1 - SSIM(x, y)) + (1 - w) * MSE, w = ``pretrain.ssim_weight``; SSIM is the 3D structural
  similarity with a separable Gaussian window (sigma 1.5 voxels, up to 7 voxels wide) and the data range of the
  target per sample: SSIM = mean[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))],
  C1 = (0.01 R)^2, C2 = (0.03 R)^2.

VAE: loss = recon + beta_t * KL / N_vox, KL = sum_j -1/2 (1 + logvar_j - mu_j^2 - exp(logvar_j)) per sample
(nats), i.e. the per-voxel negative ELBO. ``beta_t = beta * min(1, t / kl_warmup_steps)`` (KL warm-up).

Contractive (``model.contractive.weight`` w > 0, either model): w * ||J||_F^2 with J = d code / d input (the
bottleneck z, or the VAE's mu) per sample, averaged over the batch. ||J||_F^2 = E_v ||J^T v||^2 for v ~ N(0, I) in
code space, so K random projections (``model.contractive.projections``) give an unbiased estimate by K vector-Jacobian
products (double backprop: the estimate stays differentiable). Rifai et al. 2011.

Sparse AE: ``l1``: weight * mean |z|; ``kl``: weight * sum_j KL(rho || rho_hat_j), rho_hat_j = batch mean of
sigmoid(z_j), KL(p||q) = p log(p/q) + (1-p) log((1-p)/(1-q)) (Ng's sparse autoencoder).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from radae.config import ModelConfig, PretrainConfig, SparseConfig
from radae.models.autoencoder import AeOutput
from radae.models.vae import VaeOutput


class LossTerms(NamedTuple):
    total: Tensor
    recon: Tensor
    kl: Tensor  # nats per sample (0 for the AE)
    sparse: Tensor  # weighted sparse penalty (0 unless model.sparse)
    beta: float


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    t = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def _blur3d(x: Tensor, win: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter over (Z, Y, X), per channel."""
    c = x.shape[1]
    k = win.numel()
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k
        x = F.conv3d(x, win.view(shape).expand(c, 1, *shape[2:]), groups=c)
    return x


def ssim3d(x: Tensor, y: Tensor, data_range: Tensor | float | None = None, win_size: int = 7, sigma: float = 1.5) -> Tensor:
    """Mean 3D SSIM per sample ``(B,)``. ``data_range`` defaults to ``max(y) - min(y)`` per sample."""
    x, y = x.float(), y.float()
    win_size = min(win_size, *x.shape[2:])
    if win_size % 2 == 0:
        win_size -= 1
    if data_range is None:
        flat = y.flatten(1)
        data_range = (flat.amax(1) - flat.amin(1)).clamp_min(1e-6)
    r = torch.as_tensor(data_range, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1, 1)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    win = _gaussian_window(win_size, sigma, x.device, x.dtype)
    mx, my = _blur3d(x, win), _blur3d(y, win)
    sxx = _blur3d(x * x, win) - mx * mx
    syy = _blur3d(y * y, win) - my * my
    sxy = _blur3d(x * y, win) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def reconstruction_loss(recon: Tensor, target: Tensor, kind: str, ssim_weight: float = 0.5) -> Tensor:
    recon, target = recon.float(), target.float()
    if kind == "mse":
        return F.mse_loss(recon, target)
    if kind == "l1":
        return F.l1_loss(recon, target)
    if kind == "ssim_mse":
        mse = F.mse_loss(recon, target)
        return ssim_weight * (1.0 - ssim3d(recon, target).mean()) + (1.0 - ssim_weight) * mse
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) in nats, summed over latent dims, averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()


def sparse_penalty(z: Tensor, cfg: SparseConfig) -> Tensor:
    z = z.float()
    if cfg.kind == "none":
        return z.new_zeros(())
    if cfg.kind == "l1":
        return cfg.weight * z.abs().mean()
    rho = cfg.target
    rho_hat = torch.sigmoid(z).mean(0).clamp(1e-6, 1 - 1e-6)
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return cfg.weight * kl.sum()


def code_of(out: AeOutput | VaeOutput) -> Tensor:
    """The latent feature of a forward pass: the AE bottleneck or the VAE posterior mean."""
    return out.mu if isinstance(out, VaeOutput) else out.z


def jacobian_frobenius_sq(code: Tensor, inp: Tensor, projections: int, generator: torch.Generator | None,
                          create_graph: bool = True) -> Tensor:
    """Unbiased estimate of ``||d code / d inp||_F^2`` per sample ``(B,)`` from ``projections`` random projections.

    ``inp`` must require grad and ``code`` be computed from it; samples are independent (no batch coupling in eval
    mode / per-sample layers), so one VJP with a batch of projections estimates every sample's norm at once.
    """
    total = code.new_zeros(code.shape[0], dtype=torch.float32)
    for _ in range(projections):
        v = torch.randn(code.shape, generator=generator, device=code.device, dtype=torch.float32).to(code.dtype)
        (g,) = torch.autograd.grad(code, inp, grad_outputs=v, create_graph=create_graph, retain_graph=True)
        total = total + g.float().pow(2).flatten(1).sum(1)
    return total / projections


def beta_at(step: int, cfg: ModelConfig) -> float:
    """KL weight after ``step`` optimizer steps (linear warm-up from 0 to beta over ``kl_warmup_steps``)."""
    if cfg.kl_warmup_steps <= 0:
        return float(cfg.beta)
    return float(cfg.beta) * min(1.0, step / cfg.kl_warmup_steps)


def compute_loss(out: AeOutput | VaeOutput, target: Tensor, cfg: PretrainConfig, step: int) -> LossTerms:
    """Total objective for one batch; ``step`` is the 1-based optimizer step (for KL warm-up)."""
    recon = reconstruction_loss(out.recon, target, cfg.loss, cfg.ssim_weight)
    zero = recon.new_zeros(())
    if isinstance(out, VaeOutput):
        beta = beta_at(step, cfg.model)
        kl = kl_divergence(out.mu, out.logvar)
        n_vox = math.prod(target.shape[1:])
        return LossTerms(recon + beta * kl / n_vox, recon, kl, zero, beta)
    sparse = sparse_penalty(out.z, cfg.model.sparse)
    return LossTerms(recon + sparse, recon, zero, sparse, 0.0)


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """PSNR in dB per sample ``(B,)``: 10 log10(R^2 / MSE), R = max(ref) - min(ref) of that sample."""
    x, ref = x.float().flatten(1), ref.float().flatten(1)
    mse = (x - ref).pow(2).mean(1).clamp_min(1e-12)
    r = (ref.amax(1) - ref.amin(1)).clamp_min(1e-6)
    return 10.0 * torch.log10(r * r / mse)
