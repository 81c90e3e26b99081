"""Peak memory (RSS) of writing feature tables as the extract stage does, for a small and a large synthetic cohort.

Each size runs in a fresh child process (``ru_maxrss`` is a per-process high-water mark), which does exactly what
``radae.stages.extract`` does with per-lesion results:

1. rows -> ``pd.DataFrame`` -> :func:`radae.features.table.canonical` (copy, float64, sorted)
2. provenance with one entry per lesion (hashes, as ``run_latent`` / ``run_radiomics`` build it)
3. :func:`radae.features.table.write_table` (Parquet with the provenance JSON in the schema metadata + CSV twin)

for a latent-like table (``latent_000..``; ``--latent-dim`` columns) and a PyRadiomics-like table
(``original_firstorder_F000..``; ``--radiomics-features`` columns).

Note: radae does NOT stream feature tables - ``write_table`` takes the whole DataFrame in memory (and
``pa.Table.from_pandas`` plus the CSV writer make further copies). So memory grows with rows x columns; this
benchmark measures how much, and reports peak RSS (absolute, including the ~interpreter + pandas/pyarrow imports)
and the growth above the post-import baseline.

    python benchmarks/bench_scale.py                         # 1,000 vs 10,000 lesions
    python benchmarks/bench_scale.py --rows 1000 100000 --radiomics-features 1500 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import radae  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_BYTES = 2 * 1024**3
FLAT_RATIO = 1.5  # "flat": peak RSS at the large size at most this x the small size's


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def child(rows: int, latent_dim: int, n_rad: int, out: Path) -> dict:
    """One size, in this (fresh) process."""
    import hashlib

    import numpy as np
    import pandas as pd
    import pyarrow  # noqa: F401  (imported before the baseline, like in a real run)

    from radae.features import table as tbl

    base = _maxrss_bytes()
    phases = {}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()

    def h(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    common = {"radae_version": "bench", "settings_hash": h("s"), "seed": 0}
    for name, cols in (("latent", [f"latent_{i:03d}" for i in range(latent_dim)]),
                       ("radiomics", [f"original_firstorder_F{i:04d}" for i in range(n_rad)])):
        if not cols:
            continue
        vals = rng.standard_normal((rows, len(cols))).astype(np.float32)
        # per-lesion result dicts, as the extract stage collects them
        recs = [{"case_id": f"C{i:07d}", "patient_id": f"P{i // 2:07d}", **dict(zip(cols, map(float, vals[i])))}
                for i in range(rows)]
        del vals
        table = tbl.canonical(pd.DataFrame(recs))
        del recs
        lesions = {c: {"preprocess_key": h(c), "source_image_sha256": h(c + "i"), "source_mask_sha256": h(c + "m")}
                   for c in table["case_id"]}
        prov = {**common, "table": name, "n_lesions": rows, "lesions": lesions}
        tbl.write_table(table, out / f"{name}.parquet", prov)
        sizes = {s: (out / f"{name}{s}").stat().st_size for s in (".parquet", ".csv")}
        del table, lesions, prov
        phases[name] = {"columns": len(cols), "peak_rss_so_far_bytes": _maxrss_bytes(), "file_bytes": sizes}
    return {"rows": rows, "baseline_rss_bytes": base, "peak_rss_bytes": _maxrss_bytes(),
            "growth_bytes": _maxrss_bytes() - base, "seconds": round(time.perf_counter() - t0, 2), "phases": phases}


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000], help="lesion counts (small first)")
    ap.add_argument("--latent-dim", type=int, default=64, help="latent columns (default model: 64)")
    ap.add_argument("--radiomics-features", type=int, default=107, help="PyRadiomics columns (Original only: 107; 0 = skip)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child is not None:
        print(json.dumps(child(args._child, args.latent_dim, args.radiomics_features, args._out)))
        return 0

    results = []
    for n in args.rows:
        with tempfile.TemporaryDirectory(prefix="radae-scale-") as tmp:
            cmd = [sys.executable, __file__, "--_child", str(n), "--_out", tmp, "--latent-dim", str(args.latent_dim),
                   "--radiomics-features", str(args.radiomics_features)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RADAE_QUIET": "1"})
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print("feature tables: written whole (radae.features.table.write_table takes a full DataFrame; NOT streamed)")
    print(f"{'lesions':>8s} {'latent cols':>11s} {'radiomics cols':>14s} {'baseline RSS':>13s} {'peak RSS':>10s} "
          f"{'growth':>10s} {'bytes/row':>9s} {'seconds':>7s}")
    for r in results:
        print(f"{r['rows']:8,d} {args.latent_dim:11d} {args.radiomics_features:14d} {mib(r['baseline_rss_bytes']):>13s} "
              f"{mib(r['peak_rss_bytes']):>10s} {mib(r['growth_bytes']):>10s} {r['growth_bytes'] / r['rows']:9,.0f} "
              f"{r['seconds']:7.1f}")
    small, large = results[0], results[-1]
    ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
    growth_ratio = large["growth_bytes"] / max(small["growth_bytes"], 1)
    per_row = (large["growth_bytes"] - small["growth_bytes"]) / max(large["rows"] - small["rows"], 1)
    extrap = {n: large["baseline_rss_bytes"] + per_row * n for n in (100_000, 1_000_000)}
    met = large["peak_rss_bytes"] <= GOAL_BYTES and ratio <= FLAT_RATIO
    print(f"peak RSS ratio {large['rows']:,} vs {small['rows']:,} lesions: {ratio:.2f}x "
          f"(growth above baseline {growth_ratio:.1f}x; goal: flat (<= {FLAT_RATIO}x) and <= 2 GiB: "
          f"{'met' if met else 'MISSED'})")
    print(f"marginal memory {per_row:,.0f} bytes/lesion -> extrapolated peak "
          + ", ".join(f"{n:,} lesions ~{mib(b)}" for n, b in extrap.items()))
    out = {"rows": args.rows, "latent_dim": args.latent_dim, "radiomics_features": args.radiomics_features,
           "streamed": False, "results": results, "peak_ratio": ratio, "growth_ratio": growth_ratio,
           "marginal_bytes_per_lesion": per_row, "extrapolated_peak_bytes": extrap,
           "peak_rss_large_bytes": large["peak_rss_bytes"], "goal_met": met}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
