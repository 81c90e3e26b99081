"""Preprocessing throughput on the real STS MR cohort: volumes/s serial vs a process pool.

Runs radae's shared per-lesion path (:func:`radae.preprocess.lesion.safe_preprocess_lesion`: read image + mask,
resample to ``--spacing`` mm, resample the mask, normalise, crop the ``--roi``^3 ROI and the pretraining patches,
bbox-crop the PyRadiomics inputs, write the cache) over the STS T1 MR lesions of ``data_manifests/sts_mr.csv``,
through the stage's own :func:`radae.preprocess.parallel.preprocess_lesions` (serial for ``n_jobs: 1``; a process pool with
one SimpleITK thread per worker, largest images first, for ``n_jobs: K``). Each run writes into its own empty cache folder (no cache hits). The parallel
timing includes starting the pool. Data: ``radae.config.data_root()`` (env RADAE_DATA).

    python benchmarks/bench_preprocess.py                          # all 34 STS MR lesions, 1 mm, 64^3 ROI
    python benchmarks/bench_preprocess.py --volumes 12 --jobs 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import radae  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def load_rows(manifest: Path, n: int) -> list[dict]:
    from radae.data.manifest import load_manifest

    df = load_manifest(manifest)
    rows = df.to_dict("records")
    return rows[:n] if n else rows


def run(rows, cfg, cache: Path, jobs: int) -> tuple[float, list]:
    from radae.preprocess.parallel import preprocess_lesions

    t0 = time.perf_counter()
    res = preprocess_lesions(rows, cfg.model_copy(update={"n_jobs": jobs}), cache, 0)
    seconds = time.perf_counter() - t0
    bad = [e for _, e, _ in res if e]
    if bad:
        raise SystemExit(f"bench_preprocess: {len(bad)} lesion(s) failed, first: {bad[0]}")
    return seconds, [m for m, _, _ in res]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "data_manifests" / "sts_mr.csv")
    ap.add_argument("--volumes", type=int, default=0, help="first N lesions of the manifest (0 = all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.0, help="isotropic mm (PreprocessConfig default 1.0)")
    ap.add_argument("--roi", type=int, default=64, help="ROI edge in voxels (PreprocessConfig default 64)")
    ap.add_argument("--patches", type=int, default=4, help="pretraining patches per volume (default 4)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.getLogger("radae").setLevel(logging.ERROR)  # per-case warnings (lesion touches the border)

    import SimpleITK as sitk

    from radae.config import PreprocessConfig, data_root

    if not (data_root() / "sts").is_dir():
        print(f"bench_preprocess: STS data not found under {data_root()} (set RADAE_DATA)", file=sys.stderr)
        return 2
    rows = load_rows(args.manifest, args.volumes)
    cfg = PreprocessConfig.model_validate({"spacing_mm": [args.spacing] * 3, "roi_size_vox": [args.roi] * 3,
                                           "patches": {"per_volume": args.patches}})
    in_vox = []
    for r in rows:
        rd = sitk.ImageFileReader()
        rd.SetFileName(r["image"])
        rd.ReadImageInformation()
        in_vox.append(math.prod(rd.GetSize()))
    results: dict = {"volumes": len(rows), "spacing_mm": args.spacing, "roi": args.roi, "patches": args.patches,
                     "cpu_count": os.cpu_count(), "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
                     "mean_input_voxels": sum(in_vox) / len(in_vox)}
    reference = None
    for label, jobs in (("serial", 1), ("process", args.jobs)):
        with tempfile.TemporaryDirectory(prefix="radae-prep-") as tmp:
            seconds, metas = run(rows, cfg, Path(tmp), jobs)
        keys = [(m["case_id"], m["preprocess_key"], m["voxel_count"]) for m in metas]
        if reference is None:
            reference = keys
        elif keys != reference:
            raise SystemExit("bench_preprocess: parallel results differ from serial")
        results[label] = {"jobs": jobs, "seconds": round(seconds, 3), "volumes_per_s": round(len(rows) / seconds, 3)}
    speedup = results["process"]["volumes_per_s"] / results["serial"]["volumes_per_s"]
    results["speedup"] = speedup
    print(f"preprocess (read, resample to {args.spacing} mm, normalise, crop {args.roi}^3 ROI + {args.patches} patches, "
          f"write cache): {len(rows)} STS MR volumes, mean {results['mean_input_voxels'] / 1e6:.2f} M voxels in; "
          f"SimpleITK threads {results['sitk_threads']}")
    for label in ("serial", "process"):
        r = results[label]
        print(f"  {label:8s} x{r['jobs']:<3d} {r['volumes_per_s']:7.2f} volumes/s  ({r['seconds']:.2f} s)")
    print(f"ratio: preprocess process x{args.jobs} vs serial: {speedup:.2f}x (goal >= 1.7x on 2 cores; includes pool start-up)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
