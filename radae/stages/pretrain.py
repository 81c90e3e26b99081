"""pretrain: train the configured autoencoder on the preprocessed ROIs and patches; writes pretrain/model.pt.

Multi-GPU runs use ``torchrun --nproc_per_node=K -m radae.cli run PIPELINE.yaml --stages pretrain``
(radae.runner.run_pretrain_distributed).
"""
from __future__ import annotations

import logging
import os

from radae.util.errors import TrainError
from radae.runfolder import RunContext

logger = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    from radae.train import run_training

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainError("pretrain under torchrun: launch `torchrun --nproc_per_node=K -m radae.cli run "
                         "PIPELINE.yaml --stages pretrain` (rank 0 holds the run folder)")
    run_training(ctx.cfg, ctx.run_dir, resume=ctx.resume, fail=ctx.fail, quiet=ctx.quiet)
