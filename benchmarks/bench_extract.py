"""Feature extraction throughput: PyRadiomics lesions/s serial vs parallel (process pool, Dask) and latent lesions/s.

Standalone: writes synthetic lesions (bright ellipsoids with noise, integer HU-like values) as radae writes them -
PyRadiomics crops (NIfTI) and autoencoder ROIs (``.npz``) - into a temp folder, then times in one run

- ``pyradiomics serial``: :func:`radae.features.handcrafted.run_lesion` over every lesion in this process
- ``pyradiomics process xK``: the same function on a spawn process pool of K workers (what ``extract.n_jobs: K`` does)
- ``pyradiomics dask xK``: the same function on a Dask LocalCluster of K single-threaded worker processes
- ``latent``: :func:`radae.features.latent.extract_latents` with an (untrained, default-sized) autoencoder, batched,
  on CPU or CUDA, in three settings: fp32 contiguous (plain PyTorch), fp32 channels-last-3d (radae's default) and
  bf16 autocast channels-last-3d (``extract.latent.precision: bf16``)

Parallel timings include starting the workers (that is what a run pays); the steady-state ratio (lesions/s between
the 10th and 90th percentile results) leaves start-up and the last stragglers out. Results of all PyRadiomics executors are
checked to be identical.

    python benchmarks/bench_extract.py                                  # 24 lesions, Original image type, 2 workers
    python benchmarks/bench_extract.py --lesions 64 --jobs 4 --image-types Original LoG Wavelet --json out.json
    python benchmarks/bench_extract.py --device cuda --roi 64 --latent-lesions 2048
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
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_lesions(folder: Path, n: int, size: int, roi: int, seed: int = 0):
    """``n`` PyRadiomics tasks (crop files) and ROI index rows (npz files)."""
    import SimpleITK as sitk

    from radae.features.handcrafted import LesionTask
    from radae.preprocess.store import save_roi

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*([np.arange(size, dtype=np.float32)] * 3), indexing="ij"))
    tasks, rows = [], []
    for i in range(n):
        c = rng.uniform(0.4, 0.6, (3, 1, 1, 1)) * size
        r = rng.uniform(0.18, 0.3, (3, 1, 1, 1)) * size
        mask = ((((grid - c) / r) ** 2).sum(0) <= 1).astype(np.uint8)
        img = np.round(rng.normal(40, 12, mask.shape) + 80 * mask + rng.normal(0, 8, mask.shape) * mask).astype(np.float32)
        paths = []
        for arr, name in ((img, "img"), (mask, "mask")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 1.0))
            paths.append(str(folder / f"{name}_{i:04d}.nii.gz"))
            sitk.WriteImage(im, paths[-1])
        tasks.append(LesionTask(f"B{i:04d}", f"B{i:04d}", "CT", *paths))
        roi_img = np.zeros((roi,) * 3, np.float32)
        roi_mask = np.zeros((roi,) * 3, np.uint8)
        k = min(size, roi)
        roi_img[:k, :k, :k] = (img[:k, :k, :k] - 40) / 80
        roi_mask[:k, :k, :k] = mask[:k, :k, :k]
        save_roi(folder / f"roi_{i:04d}.npz", roi_img, roi_mask, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        rows.append({"case_id": f"B{i:04d}", "patient_id": f"B{i:04d}", "modality": "CT", "roi_path": str(folder / f"roi_{i:04d}.npz")})
    return tasks, rows


#: latent inference settings timed: (precision, channels_last); radae's defaults are the ones the ratio goal uses
LATENT_VARIANTS = (("fp32", False), ("fp32", True), ("bf16", True))


def variant_name(v: dict) -> str:
    return f"{v['precision']} {'channels-last' if v['channels_last'] else 'contiguous'}"


def time_pyradiomics(tasks, specs, executor: str, jobs: int) -> tuple[float, float, dict]:
    """(seconds in all, steady-state lesions/s between the 10th and 90th percentile results, features by lesion)."""
    from radae.features.handcrafted import run_lesion
    from radae.features.parallel import map_tasks

    t0 = time.perf_counter()
    res, stamps = {}, []
    for r in map_tasks(run_lesion, tasks, specs, executor=executor, n_jobs=jobs, quiet=True):
        res[r["case_id"]] = r
        stamps.append(time.perf_counter())
    seconds = time.perf_counter() - t0
    a, b = len(stamps) // 10, (9 * len(stamps)) // 10
    steady = (b - a) / (stamps[b] - stamps[a]) if b > a and stamps[b] > stamps[a] else len(stamps) / seconds
    bad = [r["error"] for r in res.values() if r["error"]]
    if bad:
        raise SystemExit(f"extraction failed: {bad[0]}")
    return seconds, steady, {k: r["features"] for k, r in res.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lesions", type=int, default=24, help="lesions for PyRadiomics")
    p.add_argument("--size", type=int, default=24, help="crop size (voxels per axis)")
    p.add_argument("--jobs", type=int, default=2, help="workers for the parallel runs")
    p.add_argument("--image-types", nargs="+", default=["Original"], choices=["Original", "LoG", "Wavelet"])
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--roi", type=int, default=32, help="autoencoder ROI size (voxels per axis)")
    p.add_argument("--latent-lesions", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("RADAE_QUIET", "1")

    import torch

    from radae.config import LatentConfig, ModelConfig
    from radae.features import handcrafted as hc
    from radae.features import latent as lat
    from radae.models import build_model
    from radae.models.device import native_bf16, select_device
    from radae.util.errors import ExtractError

    results: dict = {"lesions": args.lesions, "size_vox": args.size, "jobs": args.jobs, "image_types": args.image_types,
                     "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_latent = max(args.latent_lesions, 1)
        tasks, rows = make_lesions(folder, max(args.lesions, 1), args.size, args.roi)
        params = hc.read_params(hc.shipped_params_path("CT"))
        specs = {"CT": hc.build_spec(params, source="ct.yaml", grid="resampled", image_types=args.image_types)}
        runs = [("serial", 1), ("process", args.jobs)] + ([] if args.no_dask else [("dask", args.jobs)])
        reference = None
        for executor, jobs in runs:
            seconds, steady, feats = time_pyradiomics(tasks, specs, executor, jobs)
            if reference is None:
                reference = feats
            elif feats != reference:
                raise SystemExit(f"{executor} results differ from serial")
            results[f"pyradiomics_{executor}"] = {"jobs": jobs, "seconds": round(seconds, 3),
                                                  "lesions_per_s": round(len(tasks) / seconds, 3),
                                                  "steady_lesions_per_s": round(steady, 3)}
        results["features_per_lesion"] = len(next(iter(reference.values())))

        device = select_device(args.device, what="extract.latent.device", error=ExtractError)
        # what a trained model.pt stores and the feature heads read (pooled levels' channels, the latent size)
        meta = {"in_channels": 1, "roi_size_zyx": (args.roi,) * 3, "latent_dim": ModelConfig().latent_dim,
                "model_config": ModelConfig().model_dump(mode="json")}
        latent_rows = [rows[i % len(rows)] | {"case_id": f"L{i:05d}"} for i in range(n_latent)]
        variants = []
        for precision, channels_last in LATENT_VARIANTS:
            model = build_model(ModelConfig(), 1, (args.roi,) * 3).to(device).eval()
            cfg = LatentConfig(batch_size=args.batch, precision=precision, channels_last=channels_last)
            if precision == "bf16" and not native_bf16(device):
                variants.append({"device": str(device), "roi_vox": args.roi, "precision": precision,
                                 "channels_last": channels_last, "skipped": "this CPU has no native bf16 (oneDNN): "
                                 "emulated bf16 convolutions run ~50-100x slower than fp32"})
                continue
            lat.extract_latents(latent_rows[: args.batch], model, meta, cfg, device)  # warm-up (cuDNN autotune, allocator)
            if device.type == "cuda":
                torch.cuda.synchronize()
            res = lat.extract_latents(latent_rows, model, meta, cfg, device)
            variants.append({"device": str(device), "roi_vox": args.roi, "batch": args.batch, "lesions": n_latent,
                             "precision": precision, "channels_last": channels_last, "seconds": round(res.seconds, 3),
                             "lesions_per_s": round(n_latent / res.seconds, 1)})
        results["latent_variants"] = variants
        default = LatentConfig()
        results["latent"] = next(v for v in variants if (v["precision"], v["channels_last"]) == (default.precision, default.channels_last))

    print(f"PyRadiomics: {args.lesions} lesions of {args.size}^3 voxels, image types {', '.join(args.image_types)}, "
          f"{results['features_per_lesion']} features per lesion")
    base = results["pyradiomics_serial"]["lesions_per_s"]
    for executor, jobs in runs:
        r = results[f"pyradiomics_{executor}"]
        print(f"  {executor:8s} x{jobs:<3d} {r['lesions_per_s']:8.2f} lesions/s  ({r['seconds']:.2f} s, speed-up {r['lesions_per_s'] / base:.2f})")
    for v in results["latent_variants"]:
        if "skipped" in v:
            print(f"latent: {v['roi_vox']}^3, {v['device']}, {variant_name(v)}: skipped ({v['skipped']})")
            continue
        print(f"latent: {v['lesions']} ROIs of {v['roi_vox']}^3, batch {v['batch']}, {v['device']}, {variant_name(v)}: "
              f"{v['lesions_per_s']:.1f} lesions/s ({v['seconds']:.2f} s)")
    r = results["latent"]
    steady_base = results["pyradiomics_serial"]["steady_lesions_per_s"]
    for executor, jobs in runs[1:]:
        results[f"speedup_{executor}"] = results[f"pyradiomics_{executor}"]["lesions_per_s"] / base
        results[f"steady_speedup_{executor}"] = results[f"pyradiomics_{executor}"]["steady_lesions_per_s"] / steady_base
        print(f"ratio: pyradiomics {executor} x{jobs} vs serial: {results[f'speedup_{executor}']:.2f}x (goal >= 1.7x on 2 cores; "
              f"includes worker start-up); steady state (10th-90th percentile results): "
              f"{results[f'steady_speedup_{executor}']:.2f}x")
    results["latent_vs_pyradiomics"] = r["lesions_per_s"] / base
    print(f"ratio: latent vs PyRadiomics ({', '.join(args.image_types)}) serial, per lesion: "
          f"{results['latent_vs_pyradiomics']:.2f}x (goal >= 50x; latent on {r['device']}, default {variant_name(r)})")
    for v in results["latent_variants"]:
        if "skipped" in v:
            continue
        v["vs_pyradiomics"] = v["lesions_per_s"] / base
        print(f"ratio: latent {variant_name(v)} vs PyRadiomics serial: {v['vs_pyradiomics']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
