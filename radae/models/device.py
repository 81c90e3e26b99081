"""The torch device a stage runs on: ``auto`` (CUDA if available, else CPU), ``cuda`` or ``cpu``."""
from __future__ import annotations

import torch

from radae.util.errors import RadaeError, TrainError


def select_device(preference: str, local_rank: int | None = None, what: str = "pretrain.device",
                  error: type[RadaeError] = TrainError) -> torch.device:
    """``auto``: CUDA if available, else CPU; ``cuda`` without a GPU raises ``error`` naming the config key ``what``.

    With ``local_rank`` (pretraining, also under DDP) the process takes GPU ``local_rank % device_count``; without it
    the current CUDA device (``torch.device("cuda")``, what feature extraction uses).
    """
    if preference == "cuda" and not torch.cuda.is_available():
        raise error(f"{what} is 'cuda' but torch sees no CUDA device -> use device: auto or cpu")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank is None:
            return torch.device("cuda")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively on ``device``: always on CUDA here; on a CPU only where oneDNN has
    bf16 kernels (AVX512-BF16/AMX). Elsewhere torch emulates them, ~50-100x slower than fp32."""
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
