import pytest
import torch

from radae.config import ModelConfig
from radae.util.errors import TrainError
from radae.models import MODELS, AeOutput, VaeOutput, build_model, count_parameters
from radae.models.autoencoder import feature_shapes

TINY = dict(channels=(4, 8), strides=(2, 2), latent_dim=6, num_res_units=1)


@pytest.mark.parametrize("kind", ["dae", "vae"])
@pytest.mark.parametrize("upsample", ["transpose", "upsample"])
@pytest.mark.parametrize("latent_mode", ["flatten", "pool"])
def test_shapes_round_trip_for_odd_roi_sizes(kind, upsample, latent_mode):
    cfg = ModelConfig(kind=kind, upsample=upsample, latent_mode=latent_mode, **TINY)
    model = build_model(cfg, 2, (9, 12, 15))
    x = torch.randn(3, 2, 9, 12, 15)
    out = model(x)
    assert out.recon.shape == x.shape
    assert model.encode(x).shape == (3, 6)
    assert isinstance(out, VaeOutput if kind == "vae" else AeOutput)
    assert set(MODELS) == {"dae", "vae"}


def test_feature_shapes_and_parameter_count():
    assert feature_shapes((24, 24, 24), (2, 2, 2, 2)) == [(24,) * 3, (12,) * 3, (6,) * 3, (3,) * 3, (2,) * 3]
    assert feature_shapes((7, 8, 9), (1, 3)) == [(7, 8, 9), (7, 8, 9), (3, 3, 3)]
    m = build_model(ModelConfig(channels=(4,), strides=(2,), latent_dim=3, num_res_units=0, norm="none"), 1, (4, 4, 4))
    # conv 1->4 (27*4+4) + linear 4*2^3->3 (32*3+3) + linear 3->32 (96+32) + prelu(1) + tconv 4->4 (27*16+4)
    # + prelu in each conv block (1 each, 2) + head 4->1 (27*4+1)
    expected = (108 + 4) + (96 + 3) + (96 + 32 + 1) + (432 + 4) + 2 + (108 + 1)
    assert count_parameters(m) == expected


def test_vae_eval_latents_equal_mu_and_are_deterministic():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", **TINY), 1, (8, 8, 8))
    x = torch.randn(4, 1, 8, 8, 8)
    model.eval()
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        z1, z2 = model.encode(x), model.encode(x)
        out1, out2 = model(x), model(x)
    assert torch.equal(z1, mu) and torch.equal(z1, z2)
    assert torch.equal(out1.mu, mu) and torch.equal(out1.recon, out2.recon)
    assert torch.equal(out1.recon, model.decode(mu))
    # training mode samples z: the reconstruction depends on the generator, reproducibly
    model.train()
    g1, g2, g3 = (torch.Generator().manual_seed(s) for s in (1, 1, 2))
    with torch.no_grad():
        a, b, c = model(x, generator=g1), model(x, generator=g2), model(x, generator=g3)
    assert torch.equal(a.recon, b.recon)
    assert not torch.equal(a.recon, c.recon)
    assert torch.equal(a.mu, c.mu)


def test_dae_encode_is_bottleneck_and_deterministic():
    model = build_model(ModelConfig(**TINY), 1, (8, 8, 8)).eval()
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.encode(x), model(x).z)
        assert torch.equal(model.encode(x), model.encode(x))


def test_wrong_input_shape_and_degenerate_bottleneck_are_clear_errors():
    model = build_model(ModelConfig(**TINY), 1, (8, 8, 8))
    with pytest.raises(TrainError, match=r"expects input \(B, 1, 8, 8, 8\)"):
        model.encode(torch.randn(1, 1, 8, 8, 9))
    with pytest.raises(TrainError, match="single voxel"):
        build_model(ModelConfig(channels=(4, 8), strides=(4, 4), norm="instance"), 1, (8, 8, 8))
    build_model(ModelConfig(channels=(4, 8), strides=(4, 4), norm="group"), 1, (8, 8, 8))


def test_vae_with_sparse_penalty_is_refused_by_config():
    with pytest.raises(ValueError, match="sparse"):
        ModelConfig(kind="vae", sparse={"kind": "l1"})
