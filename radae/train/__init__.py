"""Pretraining: data from the preprocess stage, the training loop, checkpoints, exact resume, multi-GPU (DDP).

Normally run as the ``pretrain`` stage of ``radae run`` (one process). For several GPUs::

    torchrun --nproc_per_node=K -m radae.cli run PIPELINE.yaml --stages pretrain [--resume] [--force] [--set k=v]

which trains with DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 holds the run lock and writes every
file (:func:`radae.runner.run_pretrain_distributed`); ``pretrain.batch_size`` is per process (global batch =
K * batch_size).

Data: every ROI (``rois.parquet`` -> ``roi_path``, image + optional mask channel) and every random whole-volume
patch (``patches_path``) of non-evaluation patients; validation = all items of a random ``val_fraction`` of the
patients (grouped, so no patient is in both). Patches carry no lesion mask, so with ``preprocess.mask_channel``
only ROIs are used.

Modules: :mod:`~radae.train.setup` (device, items, hashes, checkpoint to resume), :mod:`~radae.train.loop` (the
loop: setup / step / evaluate / finish), :mod:`~radae.train.data` (step order, resident or streamed batches),
:mod:`~radae.train.augment`, :mod:`~radae.train.state` (seeds, RNG, early stopping, hashes, schedule),
:mod:`~radae.train.validation` (validation metrics, diagnostics), :mod:`~radae.train.logs` (metrics, previews),
:mod:`~radae.train.distributed` (DDP), :mod:`~radae.train.progress`; the items themselves:
:mod:`radae.preprocess.items`.

Determinism and exact resume: every random draw of optimizer step t (which items, flips/rotations/intensity
jitter, noise level and noise, VAE epsilon) comes from a generator seeded by (seed, rank, t), and the item order
is a fixed function of (seed, epoch). A checkpoint therefore only needs model, optimizer, scheduler, scaler,
global torch RNG (dropout), early-stopping state and the step: resuming reproduces an uninterrupted run bit for
bit on CPU (same thread count).
"""
from __future__ import annotations

from radae.train.distributed import dist_info
from radae.train.loop import run_training

__all__ = ["dist_info", "run_training"]
