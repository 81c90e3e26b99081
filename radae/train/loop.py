"""The pretraining loop: :func:`run_training` = plan (items, hashes, checkpoint) -> set up model and data -> steps
(each: one optimizer step; every ``log_every``: a metrics row, every ``eval_every``: validation and early stopping)
-> final outputs (``model.pt``, ``diagnostics.json``, ``summary.json``).

The order of every random draw is that of one uninterrupted run: model init under ``cfg.seed`` inside a forked
torch RNG (seeding never leaks to the caller), then per step a generator seeded by (seed, rank, step)
(:mod:`radae.train.state`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from radae.config import PipelineConfig
from radae.models import build_model, count_parameters
from radae.models.checkpoint import CHECKPOINT_FORMAT, FORMAT_VERSION, cpu_state_dict, save_model, save_torch, unwrap
from radae.models.losses import code_of, compute_loss, jacobian_frobenius_sq
from radae.models.noise import NOISE_KINDS, corrupt, noise_settings
from radae.train.augment import augment_batch
from radae.train.data import BatchSource, StepOrder, TrainData, batch_stream, load_data, loader_mode
from radae.train.distributed import any_rank, gather, wrap_ddp
from radae.train.logs import MetricsLog, display_window, save_preview
from radae.train.progress import TrainProgress, fmt as _g
from radae.train.setup import Plan, plan_run
from radae.train.state import STEP_STREAM, VAL_STREAM, EarlyStop, lr_lambda, rng_state, set_rng_state, step_seed
from radae.train.validation import evaluate, run_diagnostics
from radae.util.errors import TrainError
from radae.util.fsutil import atomic_write_text
from radae.util.hashing import file_sha256
from radae.runfolder import OnFailure

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """The mutable state of one training run (this process)."""

    plan: Plan
    model: nn.Module  # the DDP wrapper under several processes, else the model
    n_params: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    early: EarlyStop = field(default_factory=EarlyStop)
    stats: dict = field(default_factory=lambda: {"train_s": 0.0, "data_s": 0.0, "patches": 0})
    last_train: dict = field(default_factory=dict)
    last_val: dict = field(default_factory=dict)
    data: TrainData | None = None
    preview_src: tuple[Tensor, np.ndarray] | None = None  # (input (1, C, Z, Y, X), noise code (1,))
    preview_mod: str = ""
    order: StepOrder | None = None
    gen: torch.Generator | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    metrics: MetricsLog | None = None
    mask_kw: dict = field(default_factory=dict)
    step: int = 0
    timed_out: bool = False


@dataclass
class Window:
    """Sums since the last metrics row (this process), and the last step's gradient norm and beta."""

    acc: Tensor  # loss, recon, kl, sparse
    t0: float
    steps: int = 0
    data_s: float = 0.0
    other_s: float = 0.0  # eval / preview / checkpoint time, not training time
    contract: float = 0.0  # contractive penalty
    grad_norm: Tensor | None = None
    beta: float = 0.0


def run_training(cfg: PipelineConfig, run_dir: str | Path, resume: bool = False,
                 fail: OnFailure | None = None, quiet: bool = False) -> dict:
    """Train the configured model on ``<run_dir>/preprocess/rois.parquet``; writes ``<run_dir>/pretrain/``.

    Returns the summary dict (also ``pretrain/summary.json`` on rank 0). Works under DDP if the process group
    is initialised by the caller (see :func:`radae.runner.run_pretrain_distributed`).
    """
    plan = plan_run(cfg, Path(run_dir), resume, fail, quiet)
    pcfg, device = cfg.pretrain, plan.device
    rng_devices = [device.index] if device.type == "cuda" else []
    prev_bench, prev_det = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=rng_devices):
        torch.random.default_generator.manual_seed(cfg.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed + plan.di.rank)
            torch.backends.cudnn.benchmark = not pcfg.deterministic
            if pcfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            run = setup_model(plan)
            setup_data(run)
            train(run)
            return finish(run)
        finally:
            torch.backends.cudnn.benchmark = prev_bench
            if pcfg.deterministic and device.type == "cuda":
                torch.use_deterministic_algorithms(prev_det)


# ----------------------------------------------------------------------------- setup
def setup_model(plan: Plan) -> Run:
    """Model, optimizer, schedule (restored from the checkpoint when resuming), wrapped for DDP."""
    pcfg, device, di = plan.cfg.pretrain, plan.device, plan.di
    model = build_model(pcfg.model, plan.in_channels, plan.roi_zyx).to(device)
    n_params = count_parameters(model)
    if di.is_main:
        logger.info("pretrain: %s with %s parameters, input (%d, %s), device %s x%d, amp %s, channels_last %s",
                    pcfg.model.kind, f"{n_params:,}", plan.in_channels, "x".join(map(str, plan.roi_zyx)), device,
                    di.world, "bf16" if plan.use_amp else "off", plan.channels_last)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=pcfg.lr, weight_decay=pcfg.weight_decay,
                            fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(pcfg.warmup_steps, plan.total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling; kept for the format
    run = Run(plan, model, n_params, opt, sched, scaler)
    if plan.ckpt is not None:
        _restore(run, plan.ckpt)
    run.model = wrap_ddp(model, device, di.world)
    return run


def _restore(run: Run, ckpt: dict) -> None:
    plan = run.plan
    unwrap(run.model).load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"]
    set_rng_state(rng[plan.di.rank] if plan.di.rank < len(rng) else rng[0], plan.device)
    run.early = EarlyStop.from_checkpoint(ckpt["early"], ckpt.get("best_model"))
    run.stats = dict(ckpt["stats"])
    run.last_train, run.last_val = dict(ckpt.get("last_train") or {}), dict(ckpt.get("last_val") or {})
    logger.info("pretrain: resumed from %s at step %d", plan.ckpt_path, plan.start_step)


def setup_data(run: Run) -> None:
    """Load the items (resident or streamed), the preview input, the step order and the metrics log."""
    plan = run.plan
    cfg, device, split = plan.cfg, plan.device, plan.split
    mode = loader_mode(cfg.pretrain.loader, plan.in_channels, plan.roi_zyx, len(split.train) + len(split.val), device)
    run.data = data = load_data(split, plan.train_codes, plan.val_codes, mode, cfg.preprocess.mask_channel, device)
    run.preview_src = (data.val_data[:1], plan.val_codes[:1]) if data.val_data is not None else \
        (torch.from_numpy(data.reader.load(split.train[0]))[None], plan.train_codes[:1])
    run.preview_mod = (split.val[0] if data.val_data is not None else split.train[0]).modality
    run.order = StepOrder(len(split.train), cfg.pretrain.batch_size, plan.di.world, cfg.seed)
    run.gen = torch.Generator(device=device)
    run.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if plan.use_amp else contextlib.nullcontext
    run.metrics = MetricsLog(plan.out_dir, plan.start_step if plan.ckpt is not None else None) if plan.di.is_main else None
    run.mask_kw = noise_settings(cfg.pretrain.noise)


# ----------------------------------------------------------------------------- steps
def train(run: Run) -> None:
    """Optimizer steps from the start (or resumed) step to the planned total, early stop or ``max_minutes``."""
    plan = run.plan
    pcfg, device, di = plan.cfg.pretrain, plan.device, plan.di
    done = run.early.stopped or plan.start_step >= plan.total_steps
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.step = plan.start_step
    win = Window(torch.zeros(4, device=device, dtype=torch.float64), time.perf_counter())
    deadline = time.monotonic() + 60.0 * pcfg.max_minutes if pcfg.max_minutes else None  # from here; a resume gets it anew
    win.grad_norm = torch.zeros((), device=device)
    source = BatchSource(run.data.mode, plan.split.train, plan.train_codes, plan.cfg.preprocess.mask_channel,
                         run.order, di.rank, device, pcfg.num_workers, run.data.resident)
    batches = batch_stream(source, plan.start_step + 1, plan.total_steps) if not done else iter(())
    run.model.train()
    progress = TrainProgress(plan.total_steps, run.step, enabled=di.is_main, quiet=plan.quiet)
    while not done:
        t0 = time.perf_counter()
        try:
            x, codes = next(batches)
        except StopIteration:
            break
        run.step += 1
        win.data_s += time.perf_counter() - t0
        optimizer_step(run, x, codes, params, win)
        out_of_time = any_rank(deadline is not None and time.monotonic() >= deadline, device, di.world,
                               asked=deadline is not None)  # every rank, every step: clocks may disagree
        last_step = run.step == plan.total_steps or out_of_time
        if out_of_time and not run.timed_out:
            run.timed_out = True
            logger.info("pretrain: max_minutes (%g) reached at step %d of %d", pcfg.max_minutes, run.step,
                        plan.total_steps)
        evaluating = bool(plan.split.val) and (run.step % pcfg.eval_every == 0 or last_step)
        if run.step % pcfg.log_every == 0 or last_step or evaluating:
            log_window(run, win, evaluating, progress)
        t_other = time.perf_counter()
        if di.is_main and pcfg.preview_every and run.step % pcfg.preview_every == 0:
            preview(run, run.step)
        if run.step % pcfg.checkpoint_every == 0 or last_step or run.early.stopped:
            checkpoint(run, run.step)
        win.other_s += time.perf_counter() - t_other
        progress.advance(run.step)
        done = run.early.stopped or last_step
    progress.close()
    if plan.ckpt is None and plan.start_step == 0 and run.step == 0:
        raise TrainError("pretrain: no training step was run")


def optimizer_step(run: Run, x: Tensor, codes: np.ndarray, params: list[nn.Parameter], win: Window) -> None:
    """One step: augment, corrupt, forward, loss (+ contractive penalty), backward, clip, optimizer and schedule."""
    plan, gen = run.plan, run.gen
    pcfg = plan.cfg.pretrain
    contract = pcfg.model.contractive
    gen.manual_seed(step_seed(plan.cfg.seed, STEP_STREAM, plan.di.rank, run.step))
    if pcfg.augment:
        x = augment_batch(x, gen)
    noisy = corrupt(x, codes, pcfg.noise.sigma, gen, **run.mask_kw)
    if plan.channels_last:
        noisy = noisy.contiguous(memory_format=torch.channels_last_3d)
    if contract.weight > 0:
        noisy.requires_grad_(True)
    with run.autocast():
        out = run.model(noisy, generator=gen)
    terms = compute_loss(out, x, pcfg, run.step)
    if contract.weight > 0:
        penalty = contract.weight * jacobian_frobenius_sq(code_of(out), noisy, contract.projections, gen).mean()
        terms = terms._replace(total=terms.total + penalty)
        win.contract += float(penalty.detach())
    run.opt.zero_grad(set_to_none=True)
    terms.total.backward()
    win.grad_norm = torch.nn.utils.clip_grad_norm_(params, pcfg.grad_clip)
    run.opt.step()
    run.sched.step()
    win.acc += torch.stack([terms.total.detach(), terms.recon.detach(), terms.kl.detach(), terms.sparse.detach()]).double()
    win.beta = terms.beta
    win.steps += 1


# ----------------------------------------------------------------------------- metrics, validation, early stopping
def log_window(run: Run, win: Window, evaluating: bool, progress: TrainProgress) -> None:
    """One ``train`` metrics row (means over the window and the processes); then validation if ``evaluating``."""
    plan = run.plan
    pcfg, device, di = plan.cfg.pretrain, plan.device, plan.di
    vals = win.acc.clone()
    if di.world > 1:
        dist.all_reduce(vals)
    vals = (vals / (win.steps * di.world)).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - win.t0 - win.other_s
    n_patches = win.steps * pcfg.batch_size * di.world
    run.stats["train_s"] += elapsed
    run.stats["data_s"] += win.data_s
    run.stats["patches"] += n_patches
    if not math.isfinite(vals[0]):
        raise TrainError(f"pretrain: loss became {vals[0]} at step {run.step} -> lower pretrain.lr, enable "
                         "grad clipping or check the preprocessed intensities")
    run.last_train = {"step": run.step, "epoch": round(run.order.epoch(run.step), 4), "split": "train",
                      "loss": vals[0], "recon": vals[1], "kl": vals[2], "sparse": vals[3], "beta": win.beta,
                      "contractive": win.contract / max(win.steps, 1),
                      "lr": run.sched.get_last_lr()[0], "grad_norm": float(win.grad_norm),
                      "patches_per_s": n_patches / max(elapsed, 1e-9),
                      "data_wait_fraction": win.data_s / max(elapsed, 1e-9), "elapsed_s": run.stats["train_s"]}
    if run.metrics is not None:
        run.metrics.write(run.last_train)
    win.acc.zero_()
    win.contract = 0.0
    win.steps, win.data_s, win.other_s = 0, 0.0, 0.0
    stop = torch.zeros((), device=device)
    if evaluating and di.is_main:
        validate(run, stop)
    if di.world > 1 and evaluating:
        dist.broadcast(stop, 0)
        run.early.stopped = bool(stop.item())
    progress.report(run.step, run.last_train["epoch"], vals[0], run.last_train["patches_per_s"],
                    run.last_train["data_wait_fraction"], run.last_val if evaluating and di.is_main else None)
    win.t0 = time.perf_counter()  # the evaluation above is not training time


def validate(run: Run, stop: Tensor) -> None:
    """Rank 0: a ``val`` metrics row; keeps the best weights and sets ``stop`` (1) when early stopping triggers."""
    plan, early = run.plan, run.early
    pcfg = plan.cfg.pretrain
    run.last_val = {"step": run.step, "epoch": run.last_train["epoch"], "split": "val",
                    **evaluate(unwrap(run.model), run.data.val_data, plan.val_codes, plan.cfg, plan.device,
                               run.autocast, plan.channels_last)}
    run.last_val["loss"] = run.last_val.pop("val_loss")
    run.metrics.write(run.last_val)
    if run.last_val["loss"] < early.best_loss:
        early.best_loss, early.best_step, early.bad_evals = run.last_val["loss"], run.step, 0
        if pcfg.early_stopping_patience > 0:
            early.best_state = cpu_state_dict(run.model)
    else:
        early.bad_evals += 1
    if pcfg.early_stopping_patience > 0 and early.bad_evals >= pcfg.early_stopping_patience:
        early.stopped = True
        stop.fill_(1.0)
        logger.info("pretrain: early stop at step %d (best val loss %.5g at step %d)", run.step,
                    early.best_loss, early.best_step)


# ----------------------------------------------------------------------------- previews, checkpoints
def preview(run: Run, step: int) -> None:
    """``previews/step_NNNNNNN.png`` of one fixed input (first validation item, else first training item)."""
    plan = run.plan
    cfg, pcfg, device = plan.cfg, plan.cfg.pretrain, plan.device
    x = run.preview_src[0].to(device)
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(cfg.seed, VAL_STREAM, 0, 1))
    noisy = corrupt(x, run.preview_src[1], pcfg.noise.sigma, g, **run.mask_kw)
    m = unwrap(run.model)
    was = m.training
    m.eval()
    with torch.no_grad(), run.autocast():
        recon = m(noisy.contiguous(memory_format=torch.channels_last_3d) if plan.channels_last else noisy).recon.float()
    m.train(was)
    clean = x[0, 0].cpu().numpy()
    save_preview(plan.out_dir / "previews" / f"step_{step:07d}.png", clean, noisy[0, 0].cpu().numpy(),
                 recon[0, 0].cpu().numpy(), f"{pcfg.model.kind} step {step}",
                 display_window(run.preview_mod, clean, cfg.preprocess.normalise.model_dump()))


def checkpoint(run: Run, step: int) -> None:
    """``checkpoints/last.pt`` (rank 0), with every process's RNG state: enough to resume bit for bit."""
    plan = run.plan
    rng = gather(rng_state(plan.device), plan.di.world)
    if not plan.di.is_main:
        return
    save_torch(plan.ckpt_path, {
        "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "step": step, "config_hash": plan.cfg_hash,
        "data_hash": plan.d_hash, "world_size": plan.di.world, "model_config": plan.cfg.pretrain.model.model_dump(mode="json"),
        "model": cpu_state_dict(run.model), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict(), "rng": rng, "early": run.early.to_checkpoint(),
        "best_model": run.early.best_state, "stats": run.stats, "last_train": run.last_train, "last_val": run.last_val,
    })


# ----------------------------------------------------------------------------- final outputs
def finish(run: Run) -> dict:
    """Rank 0: ``model.pt`` (best validation weights with early stopping), a last preview, ``diagnostics.json`` and
    ``summary.json``; returns the summary (``{}`` on the other ranks)."""
    plan, early = run.plan, run.early
    cfg, pcfg = plan.cfg, plan.cfg.pretrain
    summary: dict = {}
    if plan.di.is_main:
        final_state = early.best_state if (pcfg.early_stopping_patience > 0 and early.best_state) else None
        extra = {"preprocess": cfg.preprocess.model_dump(mode="json"), "noise": pcfg.noise.model_dump(mode="json"),
                 "seed": cfg.seed, "data_hash": plan.d_hash, "mask_channel": cfg.preprocess.mask_channel,
                 "modalities": sorted({it.modality for it in plan.split.train}),
                 "weights": "best_val" if final_state is not None else "last"}
        save_model(plan.out_dir / "model.pt", run.model, final_state, config_hash=plan.cfg_hash, step=run.step, extra=extra)
        preview(run, run.step)
        diag = run_diagnostics(unwrap(run.model), final_state, run.data, cfg, plan.device, run.metrics.rows,
                               early.stopped, plan.channels_last)
        atomic_write_text(plan.out_dir / "diagnostics.json", json.dumps(diag, indent=1, default=str))
        summary = summarise(run, diag, extra["weights"])
        atomic_write_text(plan.out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
        run.metrics.close()
        logger.info("pretrain: done at step %d; train loss %s, val PSNR %s -> %s dB", run.step,
                    _g(summary["final_train_loss"]), _g(summary["val_psnr_noisy_db"], ".2f"),
                    _g(summary["val_psnr_recon_db"], ".2f"))
    if plan.di.world > 1:
        dist.barrier()
    return summary


def summarise(run: Run, diag: dict, weights: str) -> dict:
    """``pretrain/summary.json``: what was trained, how far, how fast, and the final losses and PSNRs."""
    plan, early, stats, step = run.plan, run.early, run.stats, run.step
    pcfg, di, codes = plan.cfg.pretrain, plan.di, plan.train_codes
    last_train, last_val = run.last_train, run.last_val
    return {
        "model": pcfg.model.kind, "n_params": run.n_params, "in_channels": plan.in_channels,
        "roi_size_zyx": list(plan.roi_zyx), "latent_dim": pcfg.model.latent_dim, "device": str(plan.device),
        "world_size": di.world, "amp": "bf16" if plan.use_amp else "off", "channels_last": plan.channels_last,
        "loader": run.data.mode, "steps_planned": plan.total_steps, "steps_done": step, "budget": plan.budget_info,
        "stopped_by_time": run.timed_out, "resumed_from_step": plan.start_step if plan.ckpt is not None else None,
        "batch_size_per_process": pcfg.batch_size, "global_batch": pcfg.batch_size * di.world,
        "epochs": round(run.order.epoch(step), 3), "stopped_early": early.stopped,
        "best_step": early.best_step or None, "weights": weights,
        **plan.split.info,
        "noise_models": {k: int((codes == i).sum()) for i, k in enumerate(NOISE_KINDS) if (codes == i).any()},
        "final_train_loss": last_train.get("loss"), "final_val_loss": last_val.get("loss"),
        "best_val_loss": early.best_loss if math.isfinite(early.best_loss) else None,
        "val_psnr_noisy_db": last_val.get("psnr_noisy"), "val_psnr_recon_db": last_val.get("psnr_recon"),
        "val_psnr_gain_db": last_val.get("psnr_gain_db"),
        "converged": diag["convergence"]["converged"],
        "denoise_gain_db_at_highest": diag["denoise_gain_db_at_highest"],
        "patches_per_s": stats["patches"] / stats["train_s"] if stats["train_s"] > 0 else None,
        "data_wait_fraction": stats["data_s"] / stats["train_s"] if stats["train_s"] > 0 else None,
        "train_seconds": round(stats["train_s"], 3), "config_hash": plan.cfg_hash, "data_hash": plan.d_hash,
        "model_sha256": file_sha256(plan.out_dir / "model.pt"),
    }
