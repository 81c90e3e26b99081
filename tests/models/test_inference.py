"""Batch norm folded into the convolutions: same latents, fewer layers, the trained model untouched."""
from __future__ import annotations

import torch
from torch import nn

from radae.config import ModelConfig
from radae.models import build_model
from radae.models.inference import fold_batch_norm


def _trained_bn_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, channels=(4, 8), strides=(2, 2), latent_dim=6, norm="batch"), 1, (16, 16, 16))
    model.train()
    with torch.no_grad():  # running statistics away from their 0/1 start, so folding has something to fold
        for _ in range(5):
            model(torch.randn(4, 1, 16, 16, 16) * 3 + 1)
    return model.eval()


def test_folded_encoder_gives_the_same_latents_for_dae_and_vae():
    for kind in ("dae", "vae"):
        model = _trained_bn_model(kind)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        folded = fold_batch_norm(model)
        x = torch.randn(3, 1, 16, 16, 16)
        with torch.inference_mode():
            torch.testing.assert_close(folded.encode(x), model.encode(x), rtol=1e-4, atol=1e-5)
        assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.encoder.modules())
        assert any(isinstance(m, nn.BatchNorm3d) for m in model.encoder.modules())  # the original keeps its layers
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
