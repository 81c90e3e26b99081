"""What makes a pretraining run reproducible and resumable: per-step seeds, RNG state, early stopping, the hashes a
checkpoint must match, the learning-rate schedule and the planned number of steps.

Every random draw of optimizer step t comes from a generator seeded by (seed, stream, rank, t), with one stream id
per purpose (below; the patient split uses :data:`radae.preprocess.items.SPLIT_STREAM` = 12). A checkpoint
therefore only needs model, optimizer, scheduler, scaler, global torch RNG (dropout), early-stopping state and the
step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from radae.config import PipelineConfig, stable_hash
from radae.preprocess.items import DataSplit

STEP_STREAM = 11  # augmentation, noise and VAE epsilon of a training step
ORDER_STREAM = 13  # the per-epoch item permutation
VAL_STREAM = 14  # validation noise, previews, the diagnostics' training subset
# pretrain fields that change bookkeeping only, not the trajectory: a checkpoint stays valid when they change
RUN_ONLY_FIELDS = ("checkpoint_every", "preview_every", "num_workers", "log_every", "device", "loader", "max_minutes")


def step_seed(seed: int, stream: int, rank: int, step: int) -> int:
    """A 63-bit seed for generator stream ``stream`` at ``step`` on ``rank`` (counter-based, no state to save)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, stream, rank, step]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def training_hash(cfg: PipelineConfig, in_channels: int, roi_size_zyx: tuple[int, int, int]) -> str:
    """What a checkpoint must match to be resumed: the trajectory-relevant pretrain config, seed, input shape."""
    p = cfg.pretrain.model_dump(mode="json")
    for k in RUN_ONLY_FIELDS:
        p.pop(k, None)
    return stable_hash({"pretrain": p, "seed": cfg.seed, "in_channels": in_channels, "roi_size_zyx": list(roi_size_zyx)})


def data_hash(split: DataSplit, df: pd.DataFrame) -> str:
    keys = df["preprocess_key"].astype(str).tolist() if "preprocess_key" in df.columns else []
    return stable_hash({"train": [(i.case_id, i.index) for i in split.train], "val": [(i.case_id, i.index) for i in split.val],
                        "preprocess_keys": sorted(keys)})


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor after t optimizer steps: linear warm-up to 1 over ``warmup`` steps, then cosine to 0 at
    ``total``."""
    def factor(t: int) -> float:  # t = optimizer steps already taken
        if t < warmup:
            return (t + 1) / (warmup + 1)
        progress = (t - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def planned_steps(pcfg, n_train_items: int, world: int) -> tuple[int, dict]:
    """Optimizer steps the run plans: ``pretrain.epochs`` passes over the training items when set, else
    ``pretrain.steps``; the warm-up + cosine schedule spans exactly these. ``max_minutes`` may end the run earlier
    (then the result depends on the machine's speed: recorded as ``stopped_by_time``)."""
    if pcfg.epochs is not None:
        steps = max(1, math.ceil(pcfg.epochs * n_train_items / (pcfg.batch_size * world)))
        how = f"epochs={pcfg.epochs:g}"
    else:
        steps, how = pcfg.steps, f"steps={pcfg.steps}"
    return steps, {"planned_by": how, "max_minutes": pcfg.max_minutes, "early_stopping_patience": pcfg.early_stopping_patience}


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class EarlyStop:
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    stopped: bool = False
    best_state: dict | None = None

    def to_checkpoint(self) -> dict:
        return {"best_loss": self.best_loss, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "stopped": self.stopped}

    @classmethod
    def from_checkpoint(cls, e: dict, best_state: dict | None) -> EarlyStop:
        return cls(float(e["best_loss"]), int(e["best_step"]), int(e["bad_evals"]), bool(e["stopped"]), best_state)
