"""Training throughput of radae's pretraining loop: patches/s, data-wait fraction, TFLOP/s.

Standalone: writes its own synthetic 3D ROIs (smooth blobs, radae's ROI store format + rois.parquet) to a temp
folder, then times

- ``radae``: the real ``radae.train.run_training`` loop (default 64^3 model unless overridden). On CUDA this is the
  optimised path: bf16 autocast, channels_last_3d, all patches resident on the GPU, augmentation and noise drawn
  on the GPU.
- ``naive`` (``--compare``, on by default with CUDA): the usual first attempt: fp32, contiguous tensors, a
  ``DataLoader`` that re-reads every ROI from disk (``np.load`` of the .npz) and adds Gaussian noise in the worker,
  host-to-device copy per batch, ``loss.item()`` every step.

Data wait = share of the timed wall clock spent blocked on the next batch. TFLOP/s = counted FLOPs of one
training step (forward + backward, ``torch.utils.flop_counter``) x steps/s.

    python benchmarks/bench_train.py                        # CPU, 64^3 default model, a few steps
    python benchmarks/bench_train.py --device cuda          # GPU: radae loop vs naive loop
    python benchmarks/bench_train.py --device cuda --steps 300 --batch 16 --workers 8 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import radae  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_rois(folder: Path, n_items: int, size: int, seed: int = 0) -> Path:
    """``n_items`` synthetic ROIs (one per patient) + ``<folder>/run/preprocess/rois.parquet``; returns the run folder."""
    import pandas as pd

    from radae.preprocess.store import save_roi
    from radae.runfolder import ROI_INDEX_COLUMNS

    rng = np.random.default_rng(seed)
    run_dir = folder / "run"
    grid = np.stack(np.meshgrid(*([np.linspace(-1, 1, size, dtype=np.float32)] * 3), indexing="ij"))
    rows = []
    for i in range(n_items):
        c = rng.uniform(-0.3, 0.3, (3, 1, 1, 1)).astype(np.float32)
        r = rng.uniform(0.2, 0.5, (3, 1, 1, 1)).astype(np.float32)
        mask = (((grid - c) / r) ** 2).sum(0) <= 1
        img = 0.3 + 0.1 * grid[0] * rng.uniform(-1, 1) + rng.uniform(0.2, 0.5) * mask
        img = img + 0.02 * rng.standard_normal(img.shape).astype(np.float32)
        path = folder / "cache" / f"roi_{i:05d}.npz"
        save_roi(path, img.astype(np.float32), mask, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        row = {k: "" for k in ROI_INDEX_COLUMNS}
        row.update(case_id=f"B{i:05d}", patient_id=f"B{i:05d}", modality="CT", roi_path=str(path), patches_path="",
                   preprocess_key=f"bench{i}", is_evaluation=False)
        rows.append(row)
    (run_dir / "preprocess").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows)[ROI_INDEX_COLUMNS].to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)
    return run_dir


def pipeline_config(run_dir: Path, args, device: str):
    from radae.config import PipelineConfig

    model = {} if args.channels is None else {"channels": args.channels, "strides": [2] * len(args.channels)}
    return PipelineConfig.model_validate({
        "name": run_dir.name, "runs_dir": str(run_dir.parent), "seed": 0, "stages": ["pretrain"],
        "data": {"synth": {"cases": 4}},
        "preprocess": {"roi_size_vox": [args.roi] * 3},
        "pretrain": {"model": model, "sources": ["rois"], "steps": args.steps, "batch_size": args.batch,
                     "val_fraction": 0.0, "warmup_steps": 0, "checkpoint_every": 10**9, "log_every": args.log_every,
                     "device": device, "amp": True, "channels_last": True, "loader": "resident",
                     "num_workers": 0, "augment": True},
    })


def train_step_flops(cfg, device: str) -> float:
    """FLOPs of one forward + backward pass for one batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from radae.models import build_model

    model = build_model(cfg.pretrain.model, 1, tuple(cfg.preprocess.roi_size_vox[::-1])).to(device)
    x = torch.randn(cfg.pretrain.batch_size, 1, *cfg.preprocess.roi_size_vox[::-1], device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        (out.recon - x).pow(2).mean().backward()
    return float(counter.get_total_flops())


def run_radae(run_dir: Path, args, device: str) -> dict:
    from radae.train.loop import run_training

    cfg = pipeline_config(run_dir, args, device)
    t0 = time.perf_counter()
    summary = run_training(cfg, run_dir, quiet=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(r) for r in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    steady = [r["patches_per_s"] for r in rows[1:] if r["split"] == "train"] or [summary["patches_per_s"]]
    waits = [r["data_wait_fraction"] for r in rows[1:] if r["split"] == "train"] or [summary["data_wait_fraction"]]
    return {"loop": "radae", "device": summary["device"], "amp": summary["amp"], "channels_last": summary["channels_last"],
            "loader": summary["loader"], "n_params": summary["n_params"], "steps": summary["steps_done"],
            "batch": args.batch, "patches_per_s": summary["patches_per_s"],
            "patches_per_s_steady": statistics.median(steady), "data_wait_fraction": statistics.median(waits),
            "stage_wall_s": round(wall, 2), "cfg": cfg}


def run_naive(run_dir: Path, args, device: str) -> dict:
    """fp32, DataLoader reading .npz from disk every time, CPU noise, per-step host sync."""
    import pandas as pd
    import torch

    from radae.models import build_model

    cfg = pipeline_config(run_dir, args, device)
    paths = pd.read_parquet(run_dir / "preprocess" / "rois.parquet")["roi_path"].tolist()

    class DiskSet(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with np.load(paths[i]) as z:
                clean = z["image"][None].astype(np.float32)
            rng = np.random.default_rng(i + int(time.time_ns() % 1000003))
            noisy = clean + rng.uniform(0.05, 0.15) * rng.standard_normal(clean.shape).astype(np.float32)
            return torch.from_numpy(noisy), torch.from_numpy(clean)

    torch.manual_seed(0)
    model = build_model(cfg.pretrain.model, 1, (args.roi,) * 3).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(DiskSet(), batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)

    def batches():
        while True:
            yield from loader

    it = batches()
    warm = min(5, max(1, args.steps // 10))
    data_s = 0.0
    t_start = None
    for step in range(args.steps + warm):
        if step == warm:
            if device == "cuda":
                torch.cuda.synchronize()
            t_start, data_s = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        noisy, clean = next(it)
        noisy, clean = noisy.to(device), clean.to(device)
        data_s += time.perf_counter() - t0
        loss = (model(noisy).recon - clean).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
    wall = time.perf_counter() - t_start
    return {"loop": "naive", "device": device, "amp": "off", "channels_last": False, "loader": f"DataLoader({args.workers})",
            "steps": args.steps, "batch": args.batch, "patches_per_s": args.steps * args.batch / wall,
            "patches_per_s_steady": args.steps * args.batch / wall, "data_wait_fraction": data_s / wall, "cfg": cfg}


def _burn() -> None:  # a competing CPU-bound process (pure Python: holds one core, no threads)
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def _radae_rate(run_dir: Path, args, threads: int | None) -> tuple[float, int]:
    """Steady patches/s of radae's loop with radae's own thread choice (``threads`` None) or a fixed count."""
    from radae.util.threads import configure_torch

    n = configure_torch(threads)
    r = run_radae(run_dir, args, "cpu")
    return r["patches_per_s_steady"], n


def contention(args) -> int:
    """Pretraining throughput alone and with ``--contend K`` busy processes; each measurement in a fresh process
    (thread settings are per process), interleaved alone / contended / naive-threads contended."""
    import multiprocessing as mp
    import subprocess

    from radae.util.threads import usable_cores

    cores = usable_cores()
    tmp = tempfile.TemporaryDirectory(prefix="radae-bench-") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    try:
        run_dir = make_rois(work, args.items, args.roi)

        def measure(threads: int | None) -> tuple[float, int]:
            code = ("import sys, json; sys.path.insert(0, %r); import bench_train as b; from pathlib import Path; "
                    "import argparse; a = argparse.Namespace(**json.loads(sys.argv[1])); "
                    "print(json.dumps(b._radae_rate(Path(sys.argv[2]), a, %r)))" % (str(Path(__file__).parent), threads))
            ns = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, type(None)))}
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            env.pop("RADAE_THREADS", None)
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
            out = subprocess.run([sys.executable, "-c", code, json.dumps(ns), str(run_dir)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            rate, n = json.loads(out.stdout.strip().splitlines()[-1])
            return rate, n

        alone, n_alone = measure(None)
        alone_all, _ = measure(min(cores, 8))
        burners = [mp.get_context("spawn").Process(target=_burn, daemon=True) for _ in range(args.contend)]
        for b in burners:
            b.start()
        try:
            time.sleep(2.0)  # let the load average see them
            shared, n_shared = measure(None)
            naive, n_naive = measure(min(cores, 8))  # the old default: every core, whatever else runs
        finally:
            for b in burners:
                b.terminate()
        # fair share: our threads and the K busy processes split the cores evenly
        fair = max(1.0, (args.contend + min(n_alone, cores)) / cores)
        load = os.getloadavg()[0]
        print(f"pretraining {args.roi}^3, batch {args.batch}, {args.steps} steps; {cores} cores; load average now {load:.2f}")
        print(f"alone: {alone:.2f} patches/s ({n_alone} threads); with {args.contend} busy process(es): radae threads "
              f"{shared:.2f} patches/s ({n_shared} threads), all-cores threads {naive:.2f} patches/s ({n_naive} threads)")
        print(f"alone with {min(cores, 8)} threads: {alone_all:.2f} patches/s")
        print(f"ratio: pretraining slowdown under contention = {alone / shared:.2f}x with radae's thread settings, "
              f"{alone_all / naive:.2f}x with {n_naive} threads (fair share about {fair:.2f}x); contended throughput "
              f"radae threads / all-cores threads = {shared / naive:.2f}")
        out = {"alone": alone, "contended": shared, "contended_all_threads": naive, "threads": [n_alone, n_shared, n_naive],
               "contend": args.contend, "cores": cores, "slowdown": alone / shared, "slowdown_all_threads": alone_all / naive,
               "alone_all_threads": alone_all,
               "fair_share": fair, "load_average": load, "command": " ".join([Path(sys.executable).name, *sys.argv])}
        print(json.dumps(out))
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        if tmp:
            tmp.cleanup()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--roi", type=int, default=64, help="ROI edge in voxels (default model: 64^3)")
    ap.add_argument("--channels", type=int, nargs="+", default=None, help="model channels (default: ModelConfig's)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default cpu 6, cuda 200)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default cpu 2, cuda 16)")
    ap.add_argument("--items", type=int, default=None, help="synthetic ROIs written (default cpu 16, cuda 256)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers for the naive loop")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores, at most 8)")
    ap.add_argument("--compare", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the naive loop (default: on for cuda)")
    ap.add_argument("--contend", type=int, default=0, metavar="K",
                    help="also time radae's loop while K CPU-bound processes compete, and print the slowdown ratio")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    gpu = args.device == "cuda"
    args.steps = args.steps or (200 if gpu else 6)
    args.batch = args.batch or (16 if gpu else 2)
    args.items = args.items or (256 if gpu else 16)
    args.workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 1) if gpu else 0)
    args.compare = gpu if args.compare is None else args.compare
    args.log_every = max(1, args.steps // 10)
    if args.contend:
        return contention(args)

    import torch

    if gpu and not torch.cuda.is_available():
        print("bench_train: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or min(os.cpu_count() or 1, 8))
    tmp = tempfile.TemporaryDirectory(prefix="radae-bench-") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    try:
        t0 = time.perf_counter()
        run_dir = make_rois(work, args.items, args.roi)
        print(f"wrote {args.items} synthetic {args.roi}^3 ROIs in {time.perf_counter() - t0:.1f}s to {work}")
        results = [run_radae(run_dir, args, args.device)]
        if args.compare:
            results.append(run_naive(run_dir, args, args.device))
        flops = train_step_flops(results[0]["cfg"], args.device)
        for r in results:
            r["tflops_per_s"] = flops / r.pop("cfg").pretrain.batch_size * r["patches_per_s_steady"] / 1e12
        dev = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"
        print(f"\ndevice: {dev}; model {results[0]['n_params']:,} parameters; ROI {args.roi}^3; batch {args.batch}; "
              f"{args.steps} steps; training FLOPs/patch {flops / args.batch / 1e9:.2f} GFLOP")
        print(f"{'loop':8s} {'amp':5s} {'ch_last':7s} {'loader':16s} {'patches/s':>10s} {'steady':>10s} {'data wait':>9s} {'TFLOP/s':>8s}")
        for r in results:
            print(f"{r['loop']:8s} {r['amp']:5s} {str(r['channels_last']):7s} {r['loader']:16s} {r['patches_per_s']:10.2f} "
                  f"{r['patches_per_s_steady']:10.2f} {100 * r['data_wait_fraction']:8.1f}% {r['tflops_per_s']:8.3f}")
        if len(results) == 2:
            print(f"speed-up radae vs naive: {results[0]['patches_per_s_steady'] / results[1]['patches_per_s_steady']:.2f}x")
        r0 = results[0]
        note = "" if gpu else " [CPU only: no GPU measured in this run]"
        print(f"ratio: data wait / training wall clock (radae loop): {100 * r0['data_wait_fraction']:.1f}% (goal <= 10%); "
              f"{r0['patches_per_s_steady']:.2f} patches/s steady at {args.roi}^3{note}")
        if len(results) == 2:
            print(f"ratio: radae vs naive loop: {r0['patches_per_s_steady'] / results[1]['patches_per_s_steady']:.2f}x patches/s")
        out = {"device": dev, "roi": args.roi, "batch": args.batch, "steps": args.steps,
               "train_flops_per_patch": flops / args.batch, "results": results,
               "command": " ".join([Path(sys.executable).name, *sys.argv])}
        print(json.dumps(out, default=str))
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=str))
    finally:
        if tmp:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
