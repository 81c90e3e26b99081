"""Collectives of DDP pretraining on CPU (gloo): ranks that disagree about the time budget still agree to stop."""
from __future__ import annotations

import json
import socket

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, flags: list) -> None:
    import datetime
    import os

    import torch
    import torch.distributed as dist

    from radae.train.distributed import any_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=20))
    try:
        got = [any_rank(flag, torch.device("cpu"), world) for flag in flags[rank]]
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(got, fh)
    finally:
        dist.destroy_process_group()


def test_ranks_that_disagree_about_the_deadline_stop_at_the_same_step(tmp_path):
    # rank 1's clock says "out of time" one step before rank 0's; before the fix rank 1 waited in a collective that
    # rank 0 never entered (gloo's 20 s timeout would fail the worker here)
    flags = [[False, False, True], [False, True, True]]
    ctx = mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), flags), nprocs=2, join=False,
                             start_method="spawn")
    while not ctx.join(timeout=60):
        pass
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert got == [[False, True, True], [False, True, True]]
