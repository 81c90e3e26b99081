import math

import pytest
import torch

from radae.config import ModelConfig, PretrainConfig, SparseConfig
from radae.models import AeOutput, VaeOutput
from radae.models.losses import beta_at, compute_loss, kl_divergence, psnr, reconstruction_loss, sparse_penalty, ssim3d


def test_reconstruction_losses_have_known_values():
    y = torch.zeros(2, 1, 8, 8, 8)
    x = y + 0.5
    assert float(reconstruction_loss(x, y, "mse")) == pytest.approx(0.25)
    assert float(reconstruction_loss(x, y, "l1")) == pytest.approx(0.5)
    t = torch.rand(2, 1, 9, 9, 9, generator=torch.Generator().manual_seed(0))
    assert float(ssim3d(t, t).mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(reconstruction_loss(t, t, "ssim_mse")) == pytest.approx(0.0, abs=1e-5)
    noisy = t + 0.3 * torch.randn(t.shape, generator=torch.Generator().manual_seed(1))
    ours = ssim3d(noisy, t)
    assert float(ours.max()) < 0.8
    # same definition as MONAI's reference implementation (Gaussian window 7, sigma 1.5, per-sample data range)
    from monai.metrics.regression import compute_ssim_and_cs

    for i in range(2):
        rng = float(t[i].max() - t[i].min())
        ref, _ = compute_ssim_and_cs(noisy[i:i + 1], t[i:i + 1], spatial_dims=3, kernel_size=(7, 7, 7),
                                     kernel_sigma=(1.5, 1.5, 1.5), data_range=rng, kernel_type="gaussian", k1=0.01, k2=0.03)
        assert float(ours[i]) == pytest.approx(float(ref.mean()), abs=1e-5)


def test_kl_and_warmup():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert float(kl_divergence(mu, logvar)) == 0.0
    # KL(N(1, e^0) || N(0,1)) = 0.5 per dimension
    assert float(kl_divergence(torch.ones(3, 4), logvar)) == pytest.approx(2.0)
    cfg = ModelConfig(kind="vae", beta=4.0, kl_warmup_steps=10)
    assert [beta_at(s, cfg) for s in (0, 5, 10, 50)] == [0.0, 2.0, 4.0, 4.0]


def test_vae_loss_is_per_voxel_elbo():
    target = torch.zeros(2, 1, 4, 4, 4)
    out = VaeOutput(target + 0.1, torch.ones(2, 3), torch.zeros(2, 3))
    cfg = PretrainConfig(model=ModelConfig(kind="vae", beta=2.0))
    terms = compute_loss(out, target, cfg, step=1)
    assert float(terms.kl) == pytest.approx(1.5)
    assert float(terms.total) == pytest.approx(0.01 + 2.0 * 1.5 / 64)


def test_sparse_penalties():
    z = torch.zeros(4, 5)
    assert float(sparse_penalty(z - 2.0, SparseConfig(kind="l1", weight=0.1))) == pytest.approx(0.2)
    # sigmoid(0)=0.5 vs target 0.5: no penalty; vs target 0.05: 5 * KL(0.05 || 0.5)
    assert float(sparse_penalty(z, SparseConfig(kind="kl", weight=1.0, target=0.5))) == pytest.approx(0.0, abs=1e-6)
    kl = 0.05 * math.log(0.05 / 0.5) + 0.95 * math.log(0.95 / 0.5)
    assert float(sparse_penalty(z, SparseConfig(kind="kl", weight=1.0, target=0.05))) == pytest.approx(5 * kl, rel=1e-5)
    cfg = PretrainConfig(model=ModelConfig(sparse=SparseConfig(kind="l1", weight=1.0)))
    terms = compute_loss(AeOutput(torch.zeros(1, 1, 2, 2, 2), z + 1), torch.zeros(1, 1, 2, 2, 2), cfg, 1)
    assert float(terms.total) == pytest.approx(1.0) and float(terms.sparse) == pytest.approx(1.0)


def test_psnr_known_value():
    ref = torch.zeros(1, 1, 4, 4, 4)
    ref[..., 0] = 1.0  # range 1
    x = ref + 0.1  # mse 0.01 -> 20 dB
    assert float(psnr(x, ref)) == pytest.approx(20.0, abs=1e-4)
