"""Autoencoders for 3D ROIs: a fixed registry by name (``model.kind``), named outputs, loading trained weights.

- ``build_model(cfg, in_channels, roi_size_zyx)`` -> ``ConvAutoencoder3d`` (``dae``) or ``BetaVae3d`` (``vae``)
- ``model.encode(x)``: ``(B, latent_dim)`` latent features (AE bottleneck / VAE mu), deterministic in eval mode
- ``model(x, generator=g)``: ``AeOutput(recon, z)`` / ``VaeOutput(recon, mu, logvar)``
- ``load_trained(path)``: ``(model, meta)`` from ``<run>/pretrain/model.pt``
"""
from __future__ import annotations

from torch import nn

from radae.config import ModelConfig
from radae.util.errors import TrainError
from radae.models.autoencoder import AeOutput, ConvAutoencoder3d, count_parameters
from radae.models.checkpoint import load_trained
from radae.models.vae import BetaVae3d, VaeOutput

MODELS: dict[str, type[ConvAutoencoder3d]] = {"dae": ConvAutoencoder3d, "vae": BetaVae3d}


def build_model(cfg: ModelConfig, in_channels: int, roi_size_zyx: tuple[int, int, int]) -> nn.Module:
    """Instantiate ``MODELS[cfg.kind]`` for inputs ``(B, in_channels, *roi_size_zyx)``."""
    if cfg.kind not in MODELS:
        raise TrainError(f"model.kind {cfg.kind!r} is not known; choose one of {sorted(MODELS)}")
    if len(roi_size_zyx) != 3 or min(roi_size_zyx) < 1:
        raise TrainError(f"model: ROI size must be three positive voxel counts (z, y, x), got {list(roi_size_zyx)}")
    return MODELS[cfg.kind](cfg, int(in_channels), tuple(int(n) for n in roi_size_zyx))


__all__ = ["MODELS", "build_model", "load_trained", "AeOutput", "VaeOutput", "ConvAutoencoder3d", "BetaVae3d",
           "count_parameters"]
