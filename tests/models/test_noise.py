import math

import numpy as np
import pytest
import torch

from radae.config import NoiseConfig
from radae.models.noise import NOISE_CODE, corrupt, gaussian, noise_codes, poisson_like, rician, rician_mean

N = 200_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("a,sigma", [(0.0, 0.3), (0.5, 0.5), (1.0, 0.25), (3.0, 0.5)])
def test_rician_mean_bias_on_constant_image_matches_theory(a, sigma):
    x = torch.full((1, 1, N), a)
    y = rician(x, sigma, _gen()).double()
    theory = float(rician_mean(a, sigma))
    se = float(y.std()) / math.sqrt(N)
    assert abs(float(y.mean()) - theory) < 4 * se
    # the bias is real (not the plain Gaussian mean a): for a=0 it is the Rayleigh mean sigma*sqrt(pi/2)
    if a == 0.0:
        assert theory == pytest.approx(sigma * math.sqrt(math.pi / 2))
    assert float(y.mean()) > a + 0.5 * (theory - a)
    assert float(y.min()) >= 0.0


def test_rician_theory_tends_to_gaussian_at_high_snr():
    # E[y] ~ sqrt(a^2 + sigma^2) for a >> sigma
    assert float(rician_mean(20.0, 1.0)) == pytest.approx(math.sqrt(401.0), rel=1e-3)


def test_gaussian_and_poisson_moments():
    x = torch.full((1, 1, N), 0.5)
    g = gaussian(x, 0.1, _gen()).double()
    assert float(g.mean()) == pytest.approx(0.5, abs=4 * 0.1 / math.sqrt(N))
    assert float(g.std()) == pytest.approx(0.1, rel=0.01)
    # Poisson-like: mean preserved, variance sigma^2 * a (signal dependent)
    for a in (0.25, 1.0):
        p = poisson_like(torch.full((1, 1, N), a), 0.1, _gen()).double()
        assert float(p.mean()) == pytest.approx(a, abs=4 * math.sqrt(0.01 * a / N))
        assert float(p.var()) == pytest.approx(0.01 * a, rel=0.03)
    assert torch.equal(poisson_like(x, 0.0, _gen()), x)


def test_noise_kind_follows_modality_in_auto_mode():
    codes = noise_codes(["CT", "MR", "PET", "pt", "US"], NoiseConfig())
    assert codes.tolist() == [NOISE_CODE[k] for k in ("gaussian", "rician", "poisson", "poisson", "gaussian")]
    assert set(noise_codes(["CT", "MR"], NoiseConfig(kind="rician")).tolist()) == {NOISE_CODE["rician"]}


def test_corrupt_mixed_batch_is_reproducible_and_keeps_mask_channel():
    x = torch.rand(3, 2, 6, 6, 6)
    x[:, 1] = (x[:, 1] > 0.5).float()
    codes = noise_codes(["CT", "MR", "PET"], NoiseConfig())
    a = corrupt(x, codes, (0.05, 0.15), _gen(3))
    b = corrupt(x, codes, (0.05, 0.15), _gen(3))
    c = corrupt(x, codes, (0.05, 0.15), _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, 1], x[:, 1])  # mask channel untouched
    d = (a[:, 0] - x[:, 0]).flatten(1)
    assert (d.std(1) > 0.01).all()
    # MR (rician) sample stays at or above its background level; sigma 0 changes nothing
    assert float(a[1, 0].min()) >= float(x[1, 0].min()) - 1e-6
    assert torch.equal(corrupt(x, codes, (0.0, 0.0), _gen()), x)


def test_rician_on_z_scored_mr_uses_background_as_zero_signal():
    x = torch.full((2, 1, 4, 8, 8), -1.0)
    x[:, :, 2:] = 2.0  # background -1 (z-scored), tissue 2 -> amplitudes 0 and 3
    y = corrupt(x, np.array([NOISE_CODE["rician"]] * 2), (0.5, 0.5), _gen())
    bg = y[:, :, :2].double()
    assert float(bg.mean()) == pytest.approx(-1.0 + 0.5 * math.sqrt(math.pi / 2), abs=0.08)
