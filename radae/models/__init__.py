"""Autoencoders for 3D ROIs: a fixed registry by name (``model.kind``), named outputs, loading trained weights.

- ``build_model(cfg, in_channels, roi_size_zyx)`` -> ``ConvAutoencoder3d`` (``dae``) or ``BetaVae3d`` (``vae``)
- ``model.encode(x)``: ``(B, latent_dim)`` latent features (AE bottleneck / VAE mu), deterministic in eval mode
- ``model(x, generator=g)``: ``AeOutput(recon, z)`` / ``VaeOutput(recon, mu, logvar)``
- ``load_trained(path)``: ``(model, meta)`` from ``<run>/pretrain/model.pt``
"""
from __future__ import annotations

from radae.models.autoencoder import AeOutput, ConvAutoencoder3d, count_parameters
from radae.models.checkpoint import load_trained
from radae.models.registry import MODELS, build_model
from radae.models.vae import BetaVae3d, VaeOutput

__all__ = ["MODELS", "build_model", "load_trained", "AeOutput", "VaeOutput", "ConvAutoencoder3d", "BetaVae3d",
           "count_parameters"]
