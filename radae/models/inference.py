"""Inference-only rewrites of a trained model: the same function, fewer memory passes.

:func:`fold_batch_norm` folds each eval-mode ``BatchNorm3d`` into the ``Conv3d`` right before it (MONAI's
``Convolution`` = conv, then ADN with the norm first): ``bn(conv(x)) = conv'(x)`` with rescaled weights and a new bias.
On the default 64³ encoder on CPU batch norm was ~20 % of the encode time (torch profiler); folded, it costs nothing.
The model is copied: the caller's (and its weights hash) stay as trained.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every conv -> BatchNorm3d pair of a MONAI ``Convolution`` folded."""
    out = copy.deepcopy(model).eval()
    for block in out.modules():
        conv, adn = getattr(block, "conv", None), getattr(block, "adn", None)
        norm = getattr(adn, "N", None)
        if isinstance(conv, nn.Conv3d) and isinstance(norm, nn.BatchNorm3d) and norm.track_running_stats:
            block.conv = fuse_conv_bn_eval(conv, norm)
            adn.N = nn.Identity()
    return out
