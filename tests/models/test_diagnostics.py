"""pretrain/diagnostics.json: PSNR/SSIM baselines on volumes with known noise, and the convergence rule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from radae.models import diagnostics as dg
from radae.models.autoencoder import AeOutput
from radae.models.noise import NOISE_CODE


class Identity(nn.Module):
    """A 'model' that returns its input: reconstruction == noisy input, so the denoise gain must be exactly 0."""

    def forward(self, x, generator=None):
        return AeOutput(x, x.flatten(1)[:, :2])


class Oracle(nn.Module):
    """Returns the clean volume it was built with (perfect denoiser)."""

    def __init__(self, clean):
        super().__init__()
        self.clean = clean

    def forward(self, x, generator=None):
        return AeOutput(self.clean[: x.shape[0]], x.flatten(1)[:, :2])


def _volumes(n=6, size=24):
    z, y, x = np.meshgrid(*([np.arange(size)] * 3), indexing="ij")
    out = []
    for i in range(n):
        c = size / 2 + i % 3 - 1
        out.append(((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2 <= 36).astype(np.float32))  # 0/1: range R = 1
    return torch.from_numpy(np.stack(out))[:, None]


def test_psnr_of_the_noisy_input_matches_theory_and_identity_gains_nothing():
    data = _volumes()
    codes = np.full(len(data), NOISE_CODE["gaussian"])
    noise = {"kind": "gaussian", "sigma": [0.05, 0.2]}
    mean_image = data.mean(0)
    t = dg.denoising_table(Identity(), data, codes, mean_image, noise, 0, torch.device("cpu"), 4)
    for level, sigma in (("sigma=0.05", 0.05), ("sigma=0.2", 0.2)):
        row = t[level]
        assert row["noisy"]["psnr_db"] == pytest.approx(10 * math.log10(1 / sigma**2), abs=0.15)  # R = 1, MSE = sigma^2
        assert row["denoise_gain_db"] == pytest.approx(0.0, abs=1e-9)
    # mean image: MSE = mean over items of (x - mean)^2
    mse = float(((data - mean_image) ** 2).flatten(1).mean(1).clamp_min(1e-12).log10().mul(-10).mean())
    assert t["clean"]["mean_image"]["psnr_db"] == pytest.approx(mse, abs=1e-4)
    assert t["clean"]["noisy"] is None and t["clean"]["denoise_gain_db"] is None
    # blur of a noisy sharp-edged ball: better than the noisy input at high noise, worse than at low noise
    assert t["sigma=0.2"]["blur"]["psnr_db"] > t["sigma=0.2"]["noisy"]["psnr_db"]
    assert t["sigma=0.05"]["blur"]["psnr_db"] < t["sigma=0.05"]["noisy"]["psnr_db"]


def test_perfect_denoiser_has_positive_gain_and_ssim_one():
    data = _volumes(4)
    t = dg.denoising_table(Oracle(data), data, np.full(4, NOISE_CODE["gaussian"]), data.mean(0),
                           {"kind": "gaussian", "sigma": [0.1, 0.1]}, 0, torch.device("cpu"), 4)
    assert t["sigma=0.1"]["denoise_gain_db"] > 50
    assert t["sigma=0.1"]["recon"]["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_convergence_rule():
    flat = [(100 * i, 0.1 + 1e-5 * (i % 2)) for i in range(1, 7)]
    falling = [(100 * i, 1.0 / i) for i in range(1, 7)]
    clean_ok = {"recon": {"psnr_db": 20.0}, "mean_image": {"psnr_db": 12.0}}
    clean_bad = {"recon": {"psnr_db": 11.0}, "mean_image": {"psnr_db": 12.0}}
    assert dg.convergence(flat, False, clean_ok)["converged"]
    c = dg.convergence(falling, False, clean_ok)
    assert not c["converged"] and "still falling" in c["reasons"][0]
    assert dg.convergence(falling, True, clean_ok)["converged"]  # early stopping = plateau
    assert not dg.convergence(flat[:2], False, clean_ok)["converged"]  # too few evaluations
    bad = dg.convergence(flat, False, clean_bad)
    assert not bad["converged"] and "mean image" in bad["reasons"][0]
