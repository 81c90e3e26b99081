"""The fixed model registry: ``model.kind`` -> class (no import-by-string from config)."""
from __future__ import annotations

from torch import nn

from radae.config import ModelConfig
from radae.models.autoencoder import ConvAutoencoder3d
from radae.models.vae import BetaVae3d
from radae.util.errors import TrainError

MODELS: dict[str, type[ConvAutoencoder3d]] = {"dae": ConvAutoencoder3d, "vae": BetaVae3d}


def build_model(cfg: ModelConfig, in_channels: int, roi_size_zyx: tuple[int, int, int]) -> nn.Module:
    """Instantiate ``MODELS[cfg.kind]`` for inputs ``(B, in_channels, *roi_size_zyx)``."""
    if cfg.kind not in MODELS:
        raise TrainError(f"model.kind {cfg.kind!r} is not known; choose one of {sorted(MODELS)}")
    if len(roi_size_zyx) != 3 or min(roi_size_zyx) < 1:
        raise TrainError(f"model: ROI size must be three positive voxel counts (z, y, x), got {list(roi_size_zyx)}")
    return MODELS[cfg.kind](cfg, int(in_channels), tuple(int(n) for n in roi_size_zyx))
