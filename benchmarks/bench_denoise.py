"""Denoising quality of a briefly pretrained DAE on held-out patches of the shared real data.

- ``mr``: STS T1 MR (``sts/STS_*/MR_T1_image.nii.gz``), z-scored in the body, Rician noise; patients split 2:1
  into training and held-out.
- ``ct``: IBSI CT phantom PAT1 (``ibsi/ibsi1_ct_phantom_PAT1/nifti/phantom.nii.gz``), HU window [-1000, 400] ->
  [0, 1], Gaussian noise; one patient, so training patches come from the cranial 60 % of slices and held-out
  patches from the remaining caudal slices (no overlap).

Volumes are resampled to ``--spacing`` mm and cut into random ``--patch``^3 patches (70 % centred in the body).
Training is radae's own ``run_training`` (noise sampled from ``--sigma-*`` ranges per batch). On held-out
patches, noise at three fixed levels (low end, middle and high end of the range; fixed generator) is added; reported are PSNR(noisy,
clean), PSNR(reconstruction, clean), the gain in dB, and a Gaussian-blur (1 voxel) baseline for scale. PSNR uses
each clean patch's own intensity range. Data: ``radae.config.data_root()`` (env RADAE_DATA).

    python benchmarks/bench_denoise.py                       # both, CPU defaults (a few minutes on 2 cores)
    python benchmarks/bench_denoise.py --datasets mr --steps 1000 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import radae  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def volume_patches(array: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    from radae.preprocess import functional as F

    centers = F.random_patch_centers(array.shape, (size,) * 3, n, F.body_mask(array), 0.7, rng)
    pad = float(array.min())
    return np.stack([F.crop_around_lesion(array, c, (size,) * 3, pad_value=pad) for c in centers]).astype(np.float32)


def load_normalised(path: Path, modality: str, spacing: float) -> np.ndarray:
    from radae.config import NormaliseConfig
    from radae.io import read_image
    from radae.preprocess import functional as F

    vol = F.resample(read_image(path), (spacing,) * 3, "linear")
    return F.normalise(vol.array, modality, NormaliseConfig())


def mr_patches(root: Path, args, rng) -> tuple[dict[str, np.ndarray], np.ndarray]:
    paths = sorted(root.glob("sts/STS_*/MR_T1_image.nii.gz"))
    if args.patients:
        paths = paths[: args.patients]
    if len(paths) < 3:
        raise SystemExit(f"bench_denoise: need at least 3 STS MR images under {root}/sts, found {len(paths)}")
    order = rng.permutation(len(paths))
    n_test = max(1, len(paths) // 3)
    test_ids = set(order[:n_test].tolist())
    train, test = {}, []
    for i, p in enumerate(paths):
        arr = load_normalised(p, "MR", args.spacing)
        if i in test_ids:
            test.append(volume_patches(arr, args.test_patches, args.patch, rng))
        else:
            train[p.parent.name] = volume_patches(arr, args.train_patches, args.patch, rng)
    return train, np.concatenate(test)


def ct_patches(root: Path, args, rng) -> tuple[dict[str, np.ndarray], np.ndarray]:
    path = root / "ibsi" / "ibsi1_ct_phantom_PAT1" / "nifti" / "phantom.nii.gz"
    if not path.exists():
        raise SystemExit(f"bench_denoise: IBSI CT phantom not found at {path}")
    arr = load_normalised(path, "CT", args.spacing)
    cut = int(round(0.6 * arr.shape[0]))
    train = volume_patches(arr[:cut], args.train_patches * 12, args.patch, rng)  # one patient: many patches
    test = volume_patches(arr[cut:], args.test_patches * 6, args.patch, rng)
    return {"PAT1": train}, test


def write_run(work: Path, train: dict[str, np.ndarray], modality: str) -> Path:
    import pandas as pd

    from radae.preprocess.store import save_patches
    from radae.runfolder import ROI_INDEX_COLUMNS

    run_dir = work / "run"
    rows = []
    for pid, patches in train.items():
        path = work / "cache" / f"{pid}_patches.npz"
        save_patches(path, patches)
        row = {k: "" for k in ROI_INDEX_COLUMNS}
        row.update(case_id=pid, patient_id=pid, modality=modality, roi_path="", patches_path=str(path),
                   preprocess_key=pid, is_evaluation=False)
        rows.append(row)
    (run_dir / "preprocess").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows)[ROI_INDEX_COLUMNS].to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)
    return run_dir


def evaluate_heldout(model_path: Path, test: np.ndarray, kind: str, sigma: float, device: str, seed: int) -> dict:
    """PSNR of noisy / reconstructed / blurred held-out patches at one noise level (fixed generator)."""
    import torch
    from scipy.ndimage import gaussian_filter

    from radae.models import load_trained
    from radae.models.losses import psnr
    from radae.models.noise import NOISE_CODE, corrupt

    model, meta = load_trained(model_path, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    clean = torch.from_numpy(test)[:, None].to(device)
    p_noisy, p_recon, p_blur = [], [], []
    with torch.no_grad():
        for s in range(0, len(clean), 16):
            x = clean[s:s + 16]
            noisy = corrupt(x, np.full(len(x), NOISE_CODE[kind]), (sigma, sigma), gen)
            recon = model(noisy).recon
            blur = torch.from_numpy(np.stack([gaussian_filter(v, 1.0) for v in noisy[:, 0].cpu().numpy()]))[:, None]
            p_noisy.append(psnr(noisy, x).cpu())
            p_recon.append(psnr(recon, x).cpu())
            p_blur.append(psnr(blur.to(device), x).cpu())
    pn, pr, pb = (torch.cat(v).numpy().astype(float) for v in (p_noisy, p_recon, p_blur))
    gain = pr - pn
    return {"heldout_patches": int(len(test)), "sigma": sigma, "psnr_noisy_db": float(pn.mean()),
            "psnr_recon_db": float(pr.mean()), "gain_db": float(gain.mean()), "gain_sd_db": float(gain.std(ddof=1)),
            "improved_fraction": float((gain > 0).mean()), "psnr_blur_db": float(pb.mean()),
            "blur_gain_db": float((pb - pn).mean()), "n_params": meta["n_params"]}


def run_dataset(name: str, root: Path, args) -> dict:
    from radae.config import PipelineConfig
    from radae.train.loop import run_training

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    kind, modality, sigma = ("rician", "MR", args.sigma_mr) if name == "mr" else ("gaussian", "CT", args.sigma_ct)
    train, test = (mr_patches if name == "mr" else ct_patches)(root, args, rng)
    n_train = sum(len(v) for v in train.values())
    with tempfile.TemporaryDirectory(prefix=f"radae-denoise-{name}-") as tmp:
        run_dir = write_run(Path(tmp), train, modality)
        cfg = PipelineConfig.model_validate({
            "name": "run", "runs_dir": tmp, "seed": args.seed, "stages": ["pretrain"], "data": {"synth": {"cases": 4}},
            "preprocess": {"roi_size_vox": [args.patch] * 3, "spacing_mm": [args.spacing] * 3},
            "pretrain": {"model": {"channels": args.channels, "strides": [2] * len(args.channels), "num_res_units": 1,
                                   "latent_dim": args.latent_dim, "latent_mode": "flatten", "norm": args.norm},
                         "noise": {"kind": kind, "sigma": list(sigma)}, "loss": "mse", "sources": ["patches"],
                         "steps": args.steps, "batch_size": args.batch, "lr": 2e-3, "warmup_steps": 20,
                         "val_fraction": 0.0, "checkpoint_every": 10**9, "log_every": 50, "device": args.device},
        })
        t1 = time.perf_counter()
        summary = run_training(cfg, run_dir, quiet=True)
        train_s = time.perf_counter() - t1
        dev = "cuda" if summary["device"].startswith("cuda") else "cpu"
        levels = (sigma[0], float(np.mean(sigma)), sigma[1])
        rows = [evaluate_heldout(run_dir / "pretrain" / "model.pt", test, kind, float(s), dev, args.seed + 1) for s in levels]
    for r in rows:
        r.update(dataset=name, noise=kind, train_patches=n_train, train_patients=len(train), steps=args.steps,
                 final_train_loss=summary["final_train_loss"], train_seconds=round(train_s, 1),
                 total_seconds=round(time.perf_counter() - t0, 1))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", choices=["mr", "ct"], default=["mr", "ct"])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--spacing", type=float, default=2.0, help="isotropic mm")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--latent-dim", type=int, default=256)
    ap.add_argument("--norm", choices=["batch", "instance", "group", "none"], default="batch")
    ap.add_argument("--patients", type=int, default=0, help="use only the first N STS patients (0 = all)")
    ap.add_argument("--train-patches", type=int, default=48, help="per training patient (CT: x12)")
    ap.add_argument("--test-patches", type=int, default=4, help="per held-out patient (CT: x6)")
    ap.add_argument("--sigma-mr", type=float, nargs=2, default=(0.1, 0.6), help="Rician sigma range, z-score units")
    ap.add_argument("--sigma-ct", type=float, nargs=2, default=(0.02, 0.1), help="Gaussian sigma range, [0,1] = 1400 HU")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from radae.config import data_root

    torch.set_num_threads(args.threads or min(os.cpu_count() or 1, 8))
    root = data_root()
    if not (root / "README.md").exists():
        print(f"bench_denoise: shared data not found at {root} (set RADAE_DATA)", file=sys.stderr)
        return 2
    results = [row for name in args.datasets for row in run_dataset(name, root, args)]
    print(f"\n{'data':4s} {'noise':8s} {'sigma':>6s} {'train':>6s} {'test':>5s} {'noisy dB':>9s} {'recon dB':>9s} "
          f"{'gain dB':>12s} {'improved':>8s} {'blur gain':>9s} {'train s':>7s}")
    for r in results:
        print(f"{r['dataset']:4s} {r['noise']:8s} {r['sigma']:6.3f} {r['train_patches']:6d} {r['heldout_patches']:5d} "
              f"{r['psnr_noisy_db']:9.2f} {r['psnr_recon_db']:9.2f} {r['gain_db']:6.2f} +- {r['gain_sd_db']:4.2f} "
              f"{100 * r['improved_fraction']:7.0f}% {r['blur_gain_db']:9.2f} {r['train_seconds']:7.1f}")
    out = {"results": results, "args": {k: v for k, v in vars(args).items() if k != "json"},
           "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(json.dumps(out, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
