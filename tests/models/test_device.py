"""select_device: one rule for pretraining and feature extraction, each caller's own error and config key."""
from __future__ import annotations

import pytest
import torch

from radae.models.device import select_device
from radae.util.errors import ExtractError, TrainError


def test_cuda_without_gpu_names_the_callers_key_and_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TrainError, match=r"^pretrain\.device is 'cuda' but torch sees no CUDA device -> use device: auto or cpu$"):
        select_device("cuda", 0)
    with pytest.raises(ExtractError, match=r"^extract\.latent\.device is 'cuda'"):
        select_device("cuda", what="extract.latent.device", error=ExtractError)
    assert select_device("auto", 0) == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
