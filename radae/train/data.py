"""Batches for the training loop: the item order of each optimizer step and two ways to feed it.

``resident``: every training item is loaded once into (GPU) memory and a step gathers its rows; ``stream``: a
DataLoader with ``num_workers`` reads the items of each step from the preprocess cache. Both give the same batches,
because the order is a fixed function of (seed, epoch) (:class:`StepOrder`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from radae.preprocess.items import DataSplit, Item, ItemReader
from radae.train.state import ORDER_STREAM

RESIDENT_FRACTION = 0.4  # loader auto: keep data in memory if it needs < this share of free (GPU) memory


class ItemDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Item], mask_channel: bool):
        self.items = items
        self.reader = ItemReader(mask_channel)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return torch.from_numpy(self.reader.load(self.items[i])), i


class StepOrder:
    """Items for optimizer step t (1-based): positions ``[(t-1) W B + r B, ... + B)`` of the endless concatenation
    of per-epoch permutations (epoch e shuffled by (seed, e)); rank r of W takes its own B consecutive positions."""

    def __init__(self, n_items: int, batch: int, world: int, seed: int):
        self.n, self.batch, self.world, self.seed = n_items, batch, world, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int, rank: int) -> np.ndarray:
        start = ((step - 1) * self.world + rank) * self.batch
        pos = np.arange(start, start + self.batch)
        return np.asarray([self._perm(int(p // self.n))[p % self.n] for p in pos], dtype=np.int64)

    def epoch(self, step: int) -> float:
        return step * self.world * self.batch / self.n


class _StepBatches(torch.utils.data.Sampler):
    def __init__(self, order: StepOrder, first_step: int, last_step: int, rank: int):
        self.order, self.first, self.last, self.rank = order, first_step, last_step, rank

    def __iter__(self):
        for step in range(self.first, self.last + 1):
            yield self.order.indices(step, self.rank).tolist()

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def load_resident(items: list[Item], reader: ItemReader, device: torch.device) -> Tensor:
    arrays = [reader.load(it) for it in items]
    data = torch.from_numpy(np.stack(arrays))
    if device.type == "cuda":
        return data.to(device)
    return data


def loader_mode(loader: str, in_channels: int, roi_size_zyx: tuple[int, int, int], n_items: int,
                device: torch.device) -> str:
    """``pretrain.loader`` with ``auto`` resolved: ``resident`` if all ``n_items`` fit in a share of free memory."""
    if loader != "auto":
        return loader
    item_bytes = in_channels * math.prod(roi_size_zyx) * 4
    need = item_bytes * n_items
    return "resident" if need < RESIDENT_FRACTION * available_bytes(device) else "stream"


@dataclass(frozen=True)
class TrainData:
    """The items of a run, their noise codes, and what of them is held in memory."""

    split: DataSplit
    train_codes: np.ndarray  # noise code per training item (N,)
    val_codes: np.ndarray
    mode: str  # resident | stream
    reader: ItemReader
    resident: Tensor | None  # training items (N, C, Z, Y, X) on the device (mode resident)
    val_data: Tensor | None  # validation items on the CPU


def load_data(split: DataSplit, train_codes: np.ndarray, val_codes: np.ndarray, mode: str, mask_channel: bool,
              device: torch.device) -> TrainData:
    reader = ItemReader(mask_channel)
    resident = load_resident(split.train, reader, device) if mode == "resident" else None
    val_data = load_resident(split.val, reader, torch.device("cpu")) if split.val else None
    return TrainData(split, train_codes, val_codes, mode, reader, resident, val_data)


@dataclass(frozen=True)
class BatchSource:
    """Where the training batches come from: ``mode`` ``resident`` (rows of ``resident``) or ``stream`` (files of
    ``items`` read by ``num_workers`` DataLoader workers), in the order of ``order`` for process ``rank``."""

    mode: str
    items: list[Item]
    codes: np.ndarray  # noise code per item (N,)
    mask_channel: bool
    order: StepOrder
    rank: int
    device: torch.device
    num_workers: int
    resident: Tensor | None


def batch_stream(src: BatchSource, first_step: int, last_step: int) -> Iterator[tuple[Tensor, np.ndarray]]:
    """Yields ``(x on device (B, C, Z, Y, X) float32, noise codes (B,))`` for steps first..last."""
    codes, order, rank, device = src.codes, src.order, src.rank, src.device
    if src.mode == "resident":
        resident = src.resident
        assert resident is not None
        for step in range(first_step, last_step + 1):
            idx = order.indices(step, rank)
            x = resident.index_select(0, torch.as_tensor(idx, device=resident.device))
            yield x.to(device, non_blocking=True), codes[idx]
        return
    loader = torch.utils.data.DataLoader(
        ItemDataset(src.items, src.mask_channel), batch_sampler=_StepBatches(order, first_step, last_step, rank),
        num_workers=src.num_workers, pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if src.num_workers > 0 else None)
    for x, idx in loader:
        yield x.to(device, non_blocking=True), codes[idx.numpy()]
