"""radae vs the tool it wraps: the same lesions through PyRadiomics' own batch CLI and through ``radae features``.

Standalone: writes a synthetic cohort (``radae.data.synth``: NIfTI images with ellipsoid lesions and 0/1 masks) and one
PyRadiomics parameter file (radae's shipped CT file, Original image type only), then times, as a user would run them,
each as a fresh command (start-up, reading the files and writing the CSV included):

- ``pyradiomics batch.csv -p params.yaml --jobs N --format csv -o out.csv`` (PyRadiomics' batch mode)
- ``radae features --manifest manifest.csv -p params.yaml --jobs N --out features.csv -q`` (radae's radiomics-only
  path: the extract stage's code, with provenance, data dictionary and failures.csv; a fresh work folder each time)

for N = 1 and N = 2 (``--jobs``), interleaved, ``--repeats`` times each; lesions/s is the best of the repeats (the
least disturbed by other load). Then compares every feature value of the two outputs.

    python benchmarks/bench_vs_pyradiomics.py                     # 48 lesions of a 40^3 cohort, N = 1 and 2
    python benchmarks/bench_vs_pyradiomics.py --cases 80 --jobs 1 2 4 --repeats 3 --json out.json
"""
from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(work: Path, cases: int, size: int) -> tuple[Path, Path, Path, int]:
    """(radae manifest, PyRadiomics batch CSV, parameter file, lesions)."""
    import pandas as pd
    import yaml

    sys.path.insert(0, str(ROOT))
    from radae.data.synth import generate_cohort

    df = generate_cohort(work / "cohort", cases=cases, seed=0, size_vox=size, unlabeled=0)
    manifest = work / "cohort" / "manifest.csv"
    batch = work / "batch.csv"
    base = manifest.parent
    pd.DataFrame({"ID": df["case_id"], "Image": [str((base / p).resolve()) for p in df["image"]],
                  "Mask": [str((base / p).resolve()) for p in df["mask"]],
                  "Label": df["mask_label"].astype(int)}).to_csv(batch, index=False)
    params = yaml.safe_load((ROOT / "radae" / "params" / "ct.yaml").read_text())
    params["imageType"] = {"Original": {}}
    pfile = work / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    return manifest, batch, pfile, len(df)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def pyradiomics_cmd(batch: Path, params: Path, jobs: int, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("pyradiomics")
    exe = str(exe) if exe.exists() else (shutil.which("pyradiomics") or "pyradiomics")
    return [exe, str(batch), "-p", str(params), "--jobs", str(jobs), "--format", "csv", "-o", str(out),
            "--logging-level", "WARNING"]


def radae_cmd(manifest: Path, params: Path, jobs: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "radae.cli", "features", "--manifest", str(manifest), "-p", str(params),
            "--jobs", str(jobs), "--out", str(out), "-q"]


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children: less sensitive to other load than wall)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"bench_vs_pyradiomics: {' '.join(cmd[:3])} ... failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall, cpu


def max_rel_diff(pyr_csv: Path, radae_csv: Path, batch: Path) -> tuple[float, int, str]:
    """(max relative difference over every shared feature value, features compared, worst column)."""
    import numpy as np
    import pandas as pd

    p = pd.read_csv(pyr_csv)
    r = pd.read_csv(radae_csv).set_index("case_id")
    if "ID" in p.columns:  # PyRadiomics copies the batch file's columns into its output
        p.index = p["ID"].astype(str)
    else:
        b = pd.read_csv(batch)
        ids = {(i, m, int(lab)): c for c, i, m, lab in zip(b["ID"], b["Image"], b["Mask"], b["Label"])}
        p.index = [ids[(i, m, int(lab))] for i, m, lab in zip(p["Image"], p["Mask"], p["Label"])]
    feats = [c for c in p.columns if c.startswith("original_")]
    missing = sorted(set(feats) ^ {c for c in r.columns if c.startswith("original_")})
    if missing:
        raise SystemExit(f"bench_vs_pyradiomics: feature columns differ: {missing[:5]}")
    a = p.loc[r.index, feats].to_numpy(float)
    b = r[feats].to_numpy(float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    rel = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b) / scale)
    worst = int(np.nanargmax(rel.max(axis=0)))
    return float(np.nanmax(rel)), a.size, feats[worst]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=40, help="synthetic patients (about 1.2 lesions each)")
    ap.add_argument("--size", type=int, default=40, help="voxels per image axis")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="--jobs values to compare")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each command (best is kept)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="radae-vs-pyr-") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    try:
        work.mkdir(parents=True, exist_ok=True)
        manifest, batch, params, n = make_inputs(work, args.cases, args.size)
        # byte-compiled as an installed package is (PyRadiomics' modules are, in site-packages): a checkout run with
        # PYTHONDONTWRITEBYTECODE=1 would otherwise compile radae's sources at every start
        compileall.compile_dir(str(ROOT / "radae"), quiet=1)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{n} lesions, {args.size}^3 volumes, Original features; load average {load:.2f} on {os.cpu_count()} cores")
        results = {}
        for jobs in args.jobs:
            best = {"pyradiomics": math.inf, "radae": math.inf}
            cpu = {"pyradiomics": math.inf, "radae": math.inf}
            for rep in range(args.repeats):
                order = ("pyradiomics", "radae") if rep % 2 == 0 else ("radae", "pyradiomics")
                for tool in order:
                    out = work / f"{tool}_j{jobs}_r{rep}.csv"
                    shutil.rmtree(work / f"{out.stem}_radae", ignore_errors=True)
                    cmd = pyradiomics_cmd(batch, params, jobs, out) if tool == "pyradiomics" else radae_cmd(manifest, params, jobs, out)
                    wall, used = timed(cmd, work)
                    best[tool], cpu[tool] = min(best[tool], wall), min(cpu[tool], used)
            diff, count, worst = max_rel_diff(work / f"pyradiomics_j{jobs}_r0.csv", work / f"radae_j{jobs}_r0.csv", batch)
            rate = {t: n / s for t, s in best.items()}
            ratio = rate["radae"] / rate["pyradiomics"]
            results[jobs] = {"lesions": n, "seconds": best, "cpu_seconds": cpu, "lesions_per_s": rate, "ratio": ratio,
                             "cpu_ratio": cpu["pyradiomics"] / cpu["radae"],
                             "max_rel_diff": diff, "values_compared": count, "worst_feature": worst}
            print(f"N={jobs}: pyradiomics {rate['pyradiomics']:.2f} lesions/s ({best['pyradiomics']:.2f} s), "
                  f"radae {rate['radae']:.2f} lesions/s ({best['radae']:.2f} s); CPU time pyradiomics "
                  f"{cpu['pyradiomics']:.2f} s, radae {cpu['radae']:.2f} s (pyradiomics/radae {cpu['pyradiomics'] / cpu['radae']:.2f})")
            print(f"ratio: radae/pyradiomics lesions_per_s = {ratio:.2f} at N={jobs} (goal >= 1.0)")
            print(f"ratio: max relative difference of {count} feature values = {diff:.2e} at N={jobs} "
                  f"(goal <= 1e-9; worst {worst})")
        out = {"lesions": n, "size_vox": args.size, "load_average": load, "results": results,
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
