"""Masked-volume corruption, the contractive penalty, and the KL / sparsity terms against their formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radae.config import ModelConfig, SparseConfig
from radae.models import build_model
from radae.models.losses import code_of, jacobian_frobenius_sq, kl_divergence, sparse_penalty
from radae.models.noise import NOISE_CODE, block_mask, corrupt


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_block_mask_zeroes_whole_blocks_at_the_ratio():
    x = torch.ones(64, 1, 16, 16, 16)
    y = block_mask(x, 0.3, 4, _gen())
    blocks = y.reshape(64, 1, 4, 4, 4, 4, 4, 4).permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(64, 64, 64)
    per_block = blocks.mean(-1)
    assert set(torch.unique(per_block).tolist()) <= {0.0, 1.0}  # a block is either kept or zeroed whole
    assert abs(float((per_block == 0).float().mean()) - 0.3) < 0.03
    assert torch.equal(y, block_mask(x, 0.3, 4, _gen()))  # same generator state, same bytes


def test_block_mask_handles_sizes_not_divisible_by_the_block():
    y = block_mask(torch.ones(2, 1, 10, 7, 5), 0.5, 4, _gen(1))
    assert y.shape == (2, 1, 10, 7, 5)


def test_corrupt_with_mask_kind_leaves_the_mask_channel_and_other_kinds_alone():
    x = torch.rand(4, 2, 8, 8, 8) + 0.5
    codes = np.array([NOISE_CODE["mask"], NOISE_CODE["mask"], NOISE_CODE["none"], NOISE_CODE["mask"]])
    y = corrupt(x, codes, (0.1, 0.1), _gen(), mask_ratio=0.5, mask_block_vox=2)
    assert torch.equal(y[:, 1], x[:, 1])  # mask channel clean
    assert torch.equal(y[2], x[2])  # "none" untouched
    zeroed = (y[[0, 1, 3], 0] == 0).float().mean()
    assert 0.3 < float(zeroed) < 0.7


def _tiny(kind="dae"):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, channels=(2, 4), strides=(2, 2), latent_dim=3, num_res_units=0, norm="none")
    return build_model(cfg, 1, (6, 6, 6)).double().eval()


def test_contractive_estimate_equals_finite_difference_jacobian():
    model = _tiny()
    x = torch.rand(1, 1, 6, 6, 6, dtype=torch.float64)
    # central finite differences of the code w.r.t. every input voxel
    eps = 1e-5
    flat = x.flatten()
    cols = []
    with torch.no_grad():
        for i in range(flat.numel()):
            d = torch.zeros_like(flat)
            d[i] = eps
            cols.append((model.encode((flat + d).view_as(x)) - model.encode((flat - d).view_as(x))) / (2 * eps))
    fd = float(torch.cat(cols).pow(2).sum())
    inp = x.clone().requires_grad_(True)
    code = code_of(model(inp))
    est = float(jacobian_frobenius_sq(code, inp, 64, _gen(3), create_graph=False).mean())
    many = np.mean([float(jacobian_frobenius_sq(code, inp, 64, _gen(s), create_graph=False)) for s in range(40)])
    assert abs(many - fd) / fd < 0.05  # unbiased: 2560 projections within 5 %
    assert est > 0


def test_contractive_penalty_is_differentiable():
    model = _tiny().float().train()
    inp = torch.rand(2, 1, 6, 6, 6).requires_grad_(True)
    pen = jacobian_frobenius_sq(code_of(model(inp)), inp, 2, _gen()).mean()
    pen.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_kl_term_matches_its_formula():
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0), math.log(0.25)]])
    # KL(N(mu, s^2) || N(0,1)) = 1/2 (s^2 + mu^2 - 1 - ln s^2), per dimension
    expect = sum(0.5 * (s2 + m * m - 1 - math.log(s2)) for m, s2 in ((0.0, 1.0), (1.0, 4.0), (-2.0, 0.25)))
    assert float(kl_divergence(mu, logvar)) == pytest.approx(expect, rel=1e-6)
    assert float(kl_divergence(torch.zeros(5, 4), torch.zeros(5, 4))) == 0.0


def test_sparse_kl_penalty_is_zero_at_the_target_and_pulls_activations_to_it():
    cfg = SparseConfig(kind="kl", weight=1.0, target=0.1)
    z_at = torch.full((8, 4), math.log(0.1 / 0.9))  # sigmoid = 0.1 exactly
    assert float(sparse_penalty(z_at, cfg)) == pytest.approx(0.0, abs=1e-6)
    rho, q = 0.1, 0.5
    expect = 4 * (rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q)))
    assert float(sparse_penalty(torch.zeros(8, 4), cfg)) == pytest.approx(expect, rel=1e-5)
    z = torch.zeros(16, 4, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        sparse_penalty(z, cfg).backward()
        opt.step()
    assert float(torch.sigmoid(z).mean()) == pytest.approx(0.1, abs=0.01)
    l1 = SparseConfig(kind="l1", weight=0.5)
    assert float(sparse_penalty(torch.tensor([[1.0, -3.0]]), l1)) == pytest.approx(0.5 * 2.0)
