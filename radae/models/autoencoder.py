"""3D convolutional autoencoder: strided-conv encoder -> latent vector -> mirrored decoder.

Shapes: input ``(B, C, Z, Y, X)`` with the fixed ROI size the model was built for; latent ``(B, latent_dim)``.

Encoder level ``i``: one strided 3x3x3 convolution ``channels[i-1] -> channels[i]`` (stride ``strides[i]``),
then ``num_res_units`` residual units (two 3x3x3 convolutions each) at ``channels[i]``. The last feature map is
turned into the code either by flattening it (``latent_mode: flatten``, keeps position) or by global average
pooling (``pool``, translation invariant), then a linear layer. The decoder mirrors this exactly: a linear layer
back to the last feature map, then per level residual units and a transposed convolution (or trilinear
upsample + convolution) whose output padding is chosen so every level returns the encoder's shape, so any
ROI size works (e.g. 24^3 with four stride-2 levels: 24 -> 12 -> 6 -> 3 -> 2 and back).

MONAI's ``Convolution`` / ``ResidualUnit`` blocks provide the conv + norm + dropout + activation units.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import Tensor, nn

from radae.config import ModelConfig
from radae.util.errors import TrainError

ACT = "PRELU"


class AeOutput(NamedTuple):
    recon: Tensor  # (B, C, Z, Y, X) reconstruction of the clean input
    z: Tensor  # (B, latent_dim) bottleneck code


def feature_shapes(roi_size_zyx: tuple[int, int, int], strides: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Spatial shape after each encoder level (index 0 = input). 3x3x3 kernel, padding 1: ``n -> (n - 1) // s + 1``."""
    shapes = [tuple(int(n) for n in roi_size_zyx)]
    for s in strides:
        shapes.append(tuple((n - 1) // s + 1 for n in shapes[-1]))
    return shapes


def _norm(kind: str, channels: int):
    if kind == "none":
        return None
    if kind == "group":
        groups = max(g for g in range(1, min(8, channels) + 1) if channels % g == 0)
        return ("group", {"num_groups": groups})
    return kind  # "batch" | "instance": MONAI names


def _dropout(p: float):
    return p if p > 0 else None


class ConvEncoder(nn.Module):
    """Strided convolutions + residual units; returns the last feature map ``(B, channels[-1], *shapes[-1])``."""

    def __init__(self, in_channels: int, cfg: ModelConfig):
        super().__init__()
        levels = []
        c_in = in_channels
        for c, s in zip(cfg.channels, cfg.strides):
            block: list[nn.Module] = [
                Convolution(3, c_in, c, strides=s, kernel_size=3, act=ACT, norm=_norm(cfg.norm, c), dropout=_dropout(cfg.dropout))
            ]
            block += [
                ResidualUnit(3, c, c, strides=1, kernel_size=3, subunits=2, act=ACT, norm=_norm(cfg.norm, c),
                             dropout=_dropout(cfg.dropout))
                for _ in range(cfg.num_res_units)
            ]
            levels.append(nn.Sequential(*block))
            c_in = c
        self.levels = nn.Sequential(*levels)

    def forward(self, x: Tensor) -> Tensor:
        return self.levels(x)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: feature map at ``shapes[-1]`` -> image ``(B, out_channels, *shapes[0])``."""

    def __init__(self, out_channels: int, cfg: ModelConfig, shapes: list[tuple[int, int, int]]):
        super().__init__()
        levels = []
        for i in reversed(range(len(cfg.channels))):
            c, s = cfg.channels[i], cfg.strides[i]
            c_out = cfg.channels[i - 1] if i > 0 else cfg.channels[0]
            block: list[nn.Module] = [
                ResidualUnit(3, c, c, strides=1, kernel_size=3, subunits=2, act=ACT, norm=_norm(cfg.norm, c),
                             dropout=_dropout(cfg.dropout))
                for _ in range(cfg.num_res_units)
            ]
            target = shapes[i]
            if cfg.upsample == "transpose":
                # (n - 1) * s + 1 + output_padding == target, with 0 <= output_padding < s
                pad = tuple((t - 1) % s for t in target)
                block.append(Convolution(3, c, c_out, strides=s, kernel_size=3, act=ACT, norm=_norm(cfg.norm, c_out),
                                         dropout=_dropout(cfg.dropout), is_transposed=True, output_padding=pad))
            else:
                if s > 1:
                    block.append(nn.Upsample(size=target, mode="trilinear", align_corners=False))
                block.append(Convolution(3, c, c_out, strides=1, kernel_size=3, act=ACT, norm=_norm(cfg.norm, c_out),
                                         dropout=_dropout(cfg.dropout)))
            levels.append(nn.Sequential(*block))
        self.levels = nn.Sequential(*levels)
        self.head = Convolution(3, cfg.channels[0], out_channels, strides=1, kernel_size=3, conv_only=True)

    def forward(self, h: Tensor) -> Tensor:
        return self.head(self.levels(h))


class ConvAutoencoder3d(nn.Module):
    """Plain / denoising / sparse autoencoder. ``encode(x)`` is the bottleneck code (deterministic in eval mode)."""

    code_factor = 1  # the VAE's code holds (mu, logvar)

    def __init__(self, cfg: ModelConfig, in_channels: int, roi_size_zyx: tuple[int, int, int]):
        super().__init__()
        self.config = cfg
        self.in_channels = int(in_channels)
        self.roi_size_zyx = tuple(int(n) for n in roi_size_zyx)
        self.shapes = feature_shapes(self.roi_size_zyx, cfg.strides)
        bottom = self.shapes[-1]
        if cfg.norm == "instance" and math.prod(bottom) == 1:
            raise TrainError(
                f"model: strides {list(cfg.strides)} reduce the ROI {list(self.roi_size_zyx)} (z,y,x) to a single voxel; "
                "instance norm needs more than one -> use fewer levels, smaller strides or model.norm: group"
            )
        c_last = cfg.channels[-1]
        flat = c_last * math.prod(bottom)
        out_dim = cfg.latent_dim * self.code_factor
        if cfg.latent_mode == "flatten":
            self.to_code = nn.Sequential(nn.Flatten(), nn.Linear(flat, out_dim))
        else:
            self.to_code = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(c_last, out_dim))
        self.from_code = nn.Sequential(nn.Linear(cfg.latent_dim, flat), nn.PReLU())
        self.encoder = ConvEncoder(self.in_channels, cfg)
        self.decoder = ConvDecoder(self.in_channels, cfg, self.shapes)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.roi_size_zyx:
            raise TrainError(
                f"model expects input (B, {self.in_channels}, {', '.join(map(str, self.roi_size_zyx))}), got {tuple(x.shape)} "
                "-> extract with the preprocess settings (roi_size_vox, mask_channel) the model was trained with"
            )

    def code(self, x: Tensor) -> Tensor:
        """Raw encoder head output ``(B, latent_dim * code_factor)``."""
        return self.to_code(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_code(z).view(z.shape[0], self.config.channels[-1], *self.shapes[-1])
        return self.decoder(h)

    def encode(self, x: Tensor) -> Tensor:
        """Latent features ``(B, latent_dim)``: the bottleneck code."""
        self.check_input(x)
        return self.code(x)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> AeOutput:
        """``generator`` is accepted for a uniform call signature with the VAE (unused here)."""
        self.check_input(x)
        z = self.code(x)
        return AeOutput(self.decode(z), z)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
