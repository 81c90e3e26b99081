"""Training-time augmentation of a batch: random flips, 90-degree rotations and intensity jitter (drawn, then applied)."""
from __future__ import annotations

import torch
from torch import Tensor

INTENSITY_SCALE = 0.1  # augmentation: intensity * U(1 - s, 1 + s)
INTENSITY_SHIFT = 0.05  # augmentation: + U(-s, s), normalised units


def augment_batch(x: Tensor, generator: torch.Generator, image_channel: int = 0) -> Tensor:
    """Random flips per axis, 90-degree rotation in the (y, x) plane (180 only if Y != X), intensity jitter on the
    image channel: ``x * U(1 - 0.1, 1 + 0.1) + U(-0.05, 0.05)``. Parameters are drawn first, then applied."""
    b, c = x.shape[:2]
    dev = x.device
    flips = torch.rand((b, 3), generator=generator, device=dev) < 0.5
    k = torch.randint(0, 4, (b,), generator=generator, device=dev)
    scale = 1.0 + INTENSITY_SCALE * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    shift = INTENSITY_SHIFT * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    square = x.shape[-1] == x.shape[-2]
    if not square:
        k = (k // 2) * 2
    view = (b, 1, 1, 1, 1)
    out = x
    for axis in range(3):
        out = torch.where(flips[:, axis].view(view), out.flip(2 + axis), out)
    rotated = out
    for kk in (1, 2, 3) if square else (2,):
        rotated = torch.where((k == kk).view(view), torch.rot90(out, kk, dims=(3, 4)), rotated)
    chan = torch.zeros((1, c, 1, 1, 1), device=dev, dtype=torch.bool)
    chan[:, image_channel] = True
    jittered = rotated * scale.view(view) + shift.view(view)
    return torch.where(chan, jittered, rotated)
