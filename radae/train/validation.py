"""How well the model denoises: the validation loss / PSNR of each evaluation and, at the end, ``diagnostics.json``."""
from __future__ import annotations

import contextlib
import copy
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from radae.config import PipelineConfig
from radae.models import diagnostics
from radae.models.losses import psnr, reconstruction_loss
from radae.models.noise import corrupt, noise_settings
from radae.train.data import TrainData
from radae.train.state import VAL_STREAM, step_seed


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, codes: np.ndarray, cfg: PipelineConfig, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager], channels_last: bool) -> dict:
    """Validation reconstruction loss (clean target, eval mode, fixed noise) and PSNR of noisy / reconstructed input."""
    pcfg = cfg.pretrain
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(step_seed(cfg.seed, VAL_STREAM, 0, 0))
    loss_sum, n, p_noisy, p_recon = 0.0, 0, [], []
    for start in range(0, data.shape[0], pcfg.batch_size):
        x = data[start:start + pcfg.batch_size].to(device)
        noisy = corrupt(x, codes[start:start + x.shape[0]], pcfg.noise.sigma, gen, **noise_settings(pcfg.noise))
        inp = noisy.contiguous(memory_format=torch.channels_last_3d) if channels_last else noisy
        with autocast():
            recon = model(inp).recon.float()
        loss_sum += float(reconstruction_loss(recon, x, pcfg.loss, pcfg.ssim_weight)) * x.shape[0]
        n += x.shape[0]
        p_noisy.append(psnr(noisy[:, :1], x[:, :1]).cpu())
        p_recon.append(psnr(recon[:, :1], x[:, :1]).cpu())
    model.train(was_training)
    pn, pr = float(torch.cat(p_noisy).mean()), float(torch.cat(p_recon).mean())
    return {"val_loss": loss_sum / max(n, 1), "psnr_noisy": pn, "psnr_recon": pr, "psnr_gain_db": pr - pn}


MEAN_IMAGE_ITEMS = 512  # training items averaged for the diagnostics' mean-image baseline (seeded subset)


def run_diagnostics(model: nn.Module, final_state: dict | None, data: TrainData, cfg: PipelineConfig,
                    device: torch.device, metric_rows: list[dict], stopped_early: bool, channels_last: bool) -> dict:
    """``pretrain/diagnostics.json`` (:mod:`radae.models.diagnostics`) for the weights the run keeps."""
    split, val_data, val_codes, train_codes = data.split, data.val_data, data.val_codes, data.train_codes
    resident, reader = data.resident, data.reader
    if final_state is not None:
        model = copy.deepcopy(model)
        model.load_state_dict(final_state)
    rng = np.random.default_rng([cfg.seed, VAL_STREAM])
    pick = np.sort(rng.permutation(len(split.train))[:MEAN_IMAGE_ITEMS])
    if resident is not None:
        train_x = resident.index_select(0, torch.as_tensor(pick, device=resident.device)).float().cpu()
    else:
        train_x = torch.from_numpy(np.stack([reader.load(split.train[i]) for i in pick]))
    mean_image = train_x.mean(0)
    if val_data is not None and len(val_data):
        inputs, codes, which = val_data, val_codes, "val"
    else:
        inputs, codes, which = train_x, train_codes[pick], "train (no validation split)"
    history = [(int(r["step"]), float(r["loss"])) for r in metric_rows if r.get("split") == "val" and r.get("loss") is not None]
    return diagnostics.build(model, inputs, codes, mean_image, cfg.pretrain.noise.model_dump(mode="json"), cfg.seed, device,
                             cfg.pretrain.batch_size, history, stopped_early, which, channels_last)
