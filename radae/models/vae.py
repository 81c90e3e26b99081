"""beta-VAE on the same encoder/decoder as the autoencoder.

The encoder head outputs ``(mu, logvar)`` of a diagonal Gaussian ``q(z|x)``. In training mode the decoder sees
``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn from the caller's ``torch.Generator``
(reparameterisation); in eval mode ``z = mu``, so ``encode(x)`` (= mu) and ``forward(x)`` are deterministic.
The loss (``radae.models.losses``) is reconstruction + beta * KL(q(z|x) || N(0, I)).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from radae.models.autoencoder import ConvAutoencoder3d

LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in float32/bf16


class VaeOutput(NamedTuple):
    recon: Tensor  # (B, C, Z, Y, X)
    mu: Tensor  # (B, latent_dim) posterior mean = the latent feature
    logvar: Tensor  # (B, latent_dim) posterior log-variance


class BetaVae3d(ConvAutoencoder3d):
    code_factor = 2

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.code(x).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """Latent features ``(B, latent_dim)`` = posterior mean mu (never a sample)."""
        self.check_input(x)
        return self.posterior(x)[0]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> VaeOutput:
        self.check_input(x)
        mu, logvar = self.posterior(x)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float32)
            z = mu.float() + torch.exp(0.5 * logvar.float()) * eps
        else:
            z = mu
        return VaeOutput(self.decode(z.to(mu.dtype)), mu, logvar)
