"""Peak memory (RSS) of the extract stage for a small and a large synthetic cohort: flat with cohort size?

What runs is the real stage, :func:`radae.stages.extract.run`, on a run folder with N lesions:

1. A template run (the demo pipeline shrunk to 4 cases, 16³ ROIs, a 64-latent model trained for a few steps) gives
   a real ``pretrain/model.pt``, real ROI files and real PyRadiomics results (one partial JSON per lesion).
2. For each size, a run folder is fabricated from it: ``rois.parquet`` / ``cases.parquet`` with N lesions (3 per
   patient) that point at the template's ROI files, and the template's PyRadiomics results copied to N partial
   files under each lesion's own resume key - the state after an interrupted extraction, so PyRadiomics itself
   (measured in ``bench_extract``) is not re-run.
3. A fresh child process imports radae, torch and PyRadiomics, resets its peak-RSS mark (Linux
   ``/proc/self/clear_refs``; elsewhere the peak includes the imports), notes the baseline RSS, and runs the stage: N latents through the encoder and every feature table written
   (lesion tables, patient tables with ``volume_weighted_mean``, ``lesion_provenance``, dictionary).

Reported: peak RSS, growth above the post-import baseline, bytes per extra lesion, and the 10k/1k ratio (goal: flat,
<= 1.5x, and <= 2 GiB).

    python benchmarks/bench_scale.py                         # 1,000, 10,000 and 30,000 lesions
    python benchmarks/bench_scale.py --rows 1000 10000 100000 --json out.json

The goal ratio is 10,000 vs 1,000 lesions; the marginal bytes per lesion come from the two largest sizes (below
about 5,000 lesions the tables' first row groups are still filling).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import radae  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
GOAL_BYTES = 2 * 1024**3
FLAT_RATIO = 1.5  # "flat": peak RSS at the large size at most this x the small size's
LESIONS_PER_PATIENT = 3


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak-RSS mark (Linux ``/proc/self/clear_refs``), so the peak excludes the imports."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _config(runs_dir: Path, *extra: str):
    from radae.config import load_pipeline

    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from tinyrun import DEMO, tiny_overrides

    return load_pipeline(DEMO, overrides=tiny_overrides(runs_dir, cases=4, steps=4)
                         + ["pretrain.model.latent_dim=64", "extract.aggregate=volume_weighted_mean", *extra])


def template(runs_dir: Path) -> Path:
    """The 4-case template run (ingest .. extract); returns its run folder."""
    from radae.runner import run_pipeline

    cfg = _config(runs_dir)
    run_pipeline(cfg, stages=["ingest", "preprocess", "pretrain", "extract"], quiet=True)
    return cfg.run_dir


def fabricate(tmpl_dir: Path, runs_dir: Path, n: int) -> Path:
    """A run folder with ``n`` lesions built from the template (see the module docstring)."""
    import pandas as pd

    from radae.features import tasks as ft

    cfg = _config(runs_dir)
    run_dir = cfg.run_dir
    for stage in ("ingest", "preprocess", "pretrain", "extract/partial/radiomics"):
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
    shutil.copy2(tmpl_dir / "pretrain" / "model.pt", run_dir / "pretrain" / "model.pt")
    t_rois = pd.read_parquet(tmpl_dir / "preprocess" / "rois.parquet")
    t_cases = pd.read_parquet(tmpl_dir / "ingest" / "cases.parquet").set_index("case_id")
    idx = [i % len(t_rois) for i in range(n)]
    rois = t_rois.iloc[idx].reset_index(drop=True)
    src_case = rois["case_id"].astype(str).tolist()
    rois["case_id"] = [f"C{i:07d}" for i in range(n)]
    rois["patient_id"] = [f"P{i // LESIONS_PER_PATIENT:07d}" for i in range(n)]
    rois["preprocess_key"] = [f"{k}-{i}" for i, k in enumerate(rois["preprocess_key"].astype(str))]
    cases = t_cases.loc[src_case].reset_index(drop=True)
    cases.insert(0, "case_id", rois["case_id"])
    cases["patient_id"] = rois["patient_id"]
    rois.to_parquet(run_dir / "preprocess" / "rois.parquet", index=False)
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    rcfg = cfg.extract.radiomics
    specs = ft.radiomics_specs(cfg, rois["modality"])
    t_tasks = {t.case_id: t for t in ft.radiomics_tasks(t_rois.astype({"case_id": str, "patient_id": str}),
                                                          t_cases.reset_index(), rcfg.grid, specs)}
    t_partial = {c: ft.read_partial(tmpl_dir / "extract" / "partial" / "radiomics", t) for c, t in t_tasks.items()}
    partial = run_dir / "extract" / "partial" / "radiomics"
    for task, src in zip(ft.radiomics_tasks(rois, cases, rcfg.grid, specs), src_case):
        ft.save_partial(partial, {**t_partial[src], "case_id": task.case_id, "key": task.key})
    return run_dir


def child(run_dir: Path) -> dict:
    """Run the extract stage on ``run_dir`` in this (fresh) process."""
    import pandas as pd  # noqa: F401
    import pyarrow  # noqa: F401
    import radiomics  # noqa: F401
    import torch  # noqa: F401

    from radae.runfolder import RunContext
    from radae.stages import extract as ext

    cfg = _config(run_dir.parent)
    import_peak = _peak_bytes()
    reset = _reset_peak()
    base = _status_bytes("VmRSS") if reset else import_peak
    t0 = time.perf_counter()
    ctx = RunContext(cfg, run_dir, quiet=True, stage_name="extract")
    ext.run(ctx)
    seconds = time.perf_counter() - t0
    out = run_dir / "extract"
    summary = json.loads((out / "summary.json").read_text())
    files = {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()}
    peak = _peak_bytes()
    return {"baseline_rss_bytes": base, "import_peak_bytes": import_peak, "peak_reset": reset, "peak_rss_bytes": peak,
            "growth_bytes": peak - base,
            "seconds": round(seconds, 2), "latent_lesions": summary["latent"]["extracted"],
            "radiomics_lesions": summary["radiomics"]["lesions"], "radiomics_reused": summary["radiomics"]["reused"],
            "failures": len(ctx.failures), "file_bytes": files}


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 30000], help="lesion counts (small first)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["RADAE_QUIET"] = "1"
    if args._child is not None:
        print(json.dumps(child(args._child)))
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="radae-scale-") as tmp:
        t0 = time.perf_counter()
        tmpl = template(Path(tmp) / "template")
        print(f"template run (4 cases, real model and PyRadiomics results): {time.perf_counter() - t0:.0f} s")
        for n in args.rows:
            t0 = time.perf_counter()
            run_dir = fabricate(tmpl, Path(tmp) / f"n{n}", n)
            setup_s = time.perf_counter() - t0
            proc = subprocess.run([sys.executable, __file__, "--_child", str(run_dir)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return proc.returncode
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r.update(rows=n, setup_seconds=round(setup_s, 1))
            results.append(r)
            shutil.rmtree(run_dir.parent, ignore_errors=True)

    print("extract stage, tables streamed (radae.features.table.TableWriter; one row group in memory)")
    print(f"{'lesions':>8s} {'baseline RSS':>13s} {'peak RSS':>10s} {'growth':>9s} {'latent/s':>9s} {'seconds':>7s} "
          f"{'latent.parquet':>14s} {'radiomics.csv':>13s}")
    for r in results:
        print(f"{r['rows']:8,d} {mib(r['baseline_rss_bytes']):>13s} {mib(r['peak_rss_bytes']):>10s} {mib(r['growth_bytes']):>9s} "
              f"{r['latent_lesions'] / r['seconds']:9,.0f} {r['seconds']:7.1f} {mib(r['file_bytes']['latent.parquet']):>14s} "
              f"{mib(r['file_bytes']['radiomics.csv']):>13s}")
    small, large = results[0], results[-1]
    at_10k = next((r for r in results if r["rows"] == 10_000), large)
    ratio = at_10k["peak_rss_bytes"] / small["peak_rss_bytes"]
    growth_ratio = at_10k["growth_bytes"] / max(small["growth_bytes"], 1)
    # marginal cost from the two largest sizes: past the first row groups, what each further lesion adds
    prev = results[-2] if len(results) > 1 else small
    per_row = (large["growth_bytes"] - prev["growth_bytes"]) / max(large["rows"] - prev["rows"], 1)
    extrap = {n: large["peak_rss_bytes"] + per_row * (n - large["rows"]) for n in (100_000, 1_000_000)}
    met = max(r["peak_rss_bytes"] for r in results) <= GOAL_BYTES and ratio <= FLAT_RATIO
    print(f"ratio: extract stage peak RSS {at_10k['rows']:,} vs {small['rows']:,} lesions: {ratio:.2f}x "
          f"(growth above baseline {growth_ratio:.2f}x; goal: flat (<= {FLAT_RATIO}x) and <= 2 GiB: "
          f"{'met' if met else 'MISSED'})")
    for r in results[1:]:
        if r is not at_10k:
            print(f"ratio: extract stage peak RSS {r['rows']:,} vs {small['rows']:,} lesions: "
                  f"{r['peak_rss_bytes'] / small['peak_rss_bytes']:.2f}x")
    print(f"marginal memory {prev['rows']:,} -> {large['rows']:,} lesions: {per_row:,.0f} bytes/lesion (the ROI and case "
          "index, resume keys) -> extrapolated peak " + ", ".join(f"{n:,} lesions ~{mib(b)}" for n, b in extrap.items()))
    out = {"rows": args.rows, "streamed": True, "results": results, "ratio_rows": at_10k["rows"], "peak_ratio": ratio,
           "growth_ratio": growth_ratio, "marginal_bytes_per_lesion": per_row, "marginal_from_rows": prev["rows"],
           "extrapolated_peak_bytes": extrap, "peak_rss_large_bytes": large["peak_rss_bytes"], "goal_met": met}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
