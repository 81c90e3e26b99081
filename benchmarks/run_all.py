"""Run every radae benchmark (each in its own subprocess, CPU-sized defaults) and print one table of goals.

    python benchmarks/run_all.py                      # everything, about 5 minutes on 2 CPU cores
    python benchmarks/run_all.py --quick              # smaller sizes, no denoising run (about 2 minutes)
    python benchmarks/run_all.py --only extract scale --json bench.json

Each benchmark prints its own ``ratio:`` lines (all figures are ratios or rates measured within one run, so other
load on the machine shifts them less than absolute times) and writes a JSON file that this script reads. The final
table lists ``benchmark, metric, value, goal, met?``; ``met?`` is ``-`` for figures without a goal. The exit status
is 0 when every benchmark ran (whether or not its goals are met), 1 when one failed or timed out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GiB = 1024**3
sys.path.insert(0, str(HERE))
from bench_extract import variant_name  # noqa: E402  (one name for a latent setting, here and in its own output)


def _gpu() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except Exception:  # noqa: BLE001 - informational only
        return ""


def _load() -> str:
    """1-minute load average (other jobs on the machine shift the parallel ratios)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


# name -> (script, default args, --quick args)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "extract": ("bench_extract.py",
                ["--lesions", "320", "--size", "40", "--jobs", "2", "--roi", "64", "--latent-lesions", "128", "--batch", "16",
                 "--device", "cpu"],
                ["--lesions", "96", "--size", "40", "--jobs", "2", "--roi", "64", "--latent-lesions", "48", "--batch", "16",
                 "--device", "cpu"]),
    "train": ("bench_train.py", ["--device", "cpu", "--steps", "10", "--batch", "2", "--items", "16", "--compare"],
              ["--device", "cpu", "--steps", "4", "--batch", "2", "--items", "8"]),
    "incremental": ("bench_incremental.py", ["--cases", "40", "--steps", "6"], ["--cases", "40", "--steps", "4"]),
    "scale": ("bench_scale.py", ["--rows", "1000", "10000", "30000"], ["--rows", "1000", "10000"]),
    "preprocess": ("bench_preprocess.py", ["--jobs", "2"], ["--jobs", "2", "--volumes", "12"]),
    # null simulation of the paired CV tests: few simulations here (rates +- 0.1); the README's figures use --sims 200
    "type1": ("bench_type1.py", ["--sims", "24", "--truth-fits", "20", "--jobs", "2"],
              ["--sims", "8", "--n", "34", "--truth-fits", "10", "--jobs", "2"]),
    # shrunk (about 20 s on an idle 2-core machine); bench_denoise's own defaults take ~65 s idle and >300 s under load
    "denoise": ("bench_denoise.py", ["--datasets", "mr", "--patients", "9", "--steps", "60", "--train-patches", "16",
                                     "--test-patches", "4", "--device", "cpu"], []),
    # the same lesions through `pyradiomics batch.csv --jobs N` and `radae features --manifest --jobs N`
    "vs_pyradiomics": ("bench_vs_pyradiomics.py", ["--cases", "40", "--jobs", "1", "2", "--repeats", "2"],
                       ["--cases", "16", "--jobs", "1", "2", "--repeats", "1"]),
    # pretraining alone vs beside one CPU-bound process (small 28^3 model: each measurement is a fresh process)
    "contention": ("bench_train.py", ["--contend", "1", "--roi", "28", "--channels", "8", "16", "32", "--steps", "12",
                                      "--batch", "4", "--items", "16"],
                   ["--contend", "1", "--roi", "28", "--channels", "8", "16", "--steps", "6", "--batch", "4", "--items", "8"]),
}
QUICK_SKIP = {"denoise"}


def rows_for(name: str, r: dict) -> list[tuple[str, str, str, bool | None]]:
    """(metric, value, goal, met) rows from a benchmark's JSON."""
    out: list[tuple[str, str, str, bool | None]] = []
    if name == "extract":
        j = r["jobs"]
        out.append(("PyRadiomics serial lesions/s", f"{r['pyradiomics_serial']['lesions_per_s']:.2f}",
                    f"{r['size_vox']}^3 crops, {r['features_per_lesion']} feats", None))
        for ex in ("process", "dask"):
            if f"speedup_{ex}" in r:
                v = r[f"speedup_{ex}"]
                out.append((f"PyRadiomics {ex} x{j} / serial", f"{v:.2f}x", ">= 1.7x", v >= 1.7))
                if f"steady_speedup_{ex}" in r:
                    out.append((f"  same, steady state (start-up left out)", f"{r[f'steady_speedup_{ex}']:.2f}x", "-", None))
        v = r["latent_vs_pyradiomics"]
        out.append((f"latent ({r['latent']['device']}, {r['latent']['roi_vox']}^3) / PyRadiomics per lesion",
                    f"{v:.2f}x", ">= 50x", v >= 50))
        for lv in r.get("latent_variants", []):
            if (lv["precision"], lv["channels_last"]) != (r["latent"]["precision"], r["latent"]["channels_last"]):
                out.append((f"  latent {variant_name(lv)} / PyRadiomics",
                            "skipped" if "skipped" in lv else f"{lv['vs_pyradiomics']:.2f}x", "-", None))
    elif name == "train":
        res = r["results"][0]
        gpu = not str(r["device"]).startswith("CPU")
        out.append((f"pretrain patches/s ({r['roi']}^3 default model, {r['device']})", f"{res['patches_per_s_steady']:.2f}",
                    "GPU not measured" if not gpu else "-", None))
        out.append(("pretrain data-wait fraction", f"{100 * res['data_wait_fraction']:.1f}%", "<= 10%",
                    res["data_wait_fraction"] <= 0.10))
        if len(r["results"]) > 1:
            v = res["patches_per_s_steady"] / r["results"][1]["patches_per_s_steady"]
            out.append(("pretrain radae / naive loop", f"{v:.2f}x", "-", None))
    elif name == "incremental":
        f = r["unchanged_fraction"]
        out.append(("unchanged re-run / cold run", f"{100 * f:.1f}% ({r['unchanged_s']:.2f}/{r['cold_s']:.1f}s)", "<= 5%",
                    f <= 0.05 and r["unchanged_nothing_ran"]))
        out.append((f"{r['change']}: stages re-run", ",".join(r["changed_ran"]) or "-", "benchmark,report",
                    r["changed_only_benchmark_report"]))
    elif name == "scale":
        small, large = r["results"][0], r["results"][-1]
        out.append((f"extract stage peak RSS {r['ratio_rows']:,} / {small['rows']:,} lesions", f"{r['peak_ratio']:.2f}x",
                    "flat (<= 1.5x)", r["peak_ratio"] <= 1.5))
        out.append((f"extract stage peak RSS at {large['rows']:,} lesions", f"{large['peak_rss_bytes'] / 2**20:,.0f} MiB", "<= 2 GiB",
                    large["peak_rss_bytes"] <= 2 * GiB))
        out.append((f"extract stage memory per lesion ({r['marginal_from_rows']:,} -> {large['rows']:,})",
                    f"{r['marginal_bytes_per_lesion'] / 1024:,.1f} KiB", "-", None))
    elif name == "preprocess":
        out.append((f"preprocess serial volumes/s ({r['volumes']} STS MR)", f"{r['serial']['volumes_per_s']:.2f}", "-", None))
        v = r["speedup"]
        out.append((f"preprocess process x{r['process']['jobs']} / serial", f"{v:.2f}x", ">= 1.7x", v >= 1.7))
    elif name == "vs_pyradiomics":
        for jobs, v in sorted(r["results"].items(), key=lambda kv: int(kv[0])):
            out.append((f"radae features / pyradiomics batch, lesions/s at N={jobs} ({v['lesions']} lesions)",
                        f"{v['ratio']:.2f}x (CPU {v['cpu_ratio']:.2f}x)", ">= 1.0x", v["ratio"] >= 1.0))
            out.append((f"  max relative difference of feature values, N={jobs}", f"{v['max_rel_diff']:.1e}", "<= 1e-9",
                        v["max_rel_diff"] <= 1e-9))
    elif name == "contention":
        out.append((f"pretrain slowdown beside {r['contend']} busy process(es), radae threads {r['threads'][1]}",
                    f"{r['slowdown']:.2f}x", f"near fair share {r['fair_share']:.2f}x", r["slowdown"] <= 1.5 * r["fair_share"]))
        out.append((f"  same with {r['threads'][2]} threads (all cores)", f"{r['slowdown_all_threads']:.2f}x", "-", None))
    elif name == "type1":
        for res in r["results"]:
            n = res["n"]
            for test in ("calibrated", "nadeau_bengio", "auto"):
                v = res["type1"][test]
                goal = "<= 0.06" if test == "calibrated" else "- (option)"
                out.append((f"type-I error {test} n={n} ({res['sims']} sims)", f"{v['rate']:.3f}", goal,
                            v["rate"] <= 0.06 if goal == "<= 0.06" else None))
            for iv in ("calibrated", "diff_calibrated"):
                v = res["coverage"][iv]["rate"]
                out.append((f"coverage {iv} n={n}", f"{v:.3f}", ">= 0.93", v >= 0.93))
            out.append((f"  DeLong on averaged OOF scores n={n} (not reported)", f"{res['reference_delong_oof']['rate']:.3f}", "-", None))
    elif name == "denoise":
        mid = r["results"][len(r["results"]) // 2]
        out.append((f"denoise MR gain at sigma {mid['sigma']:.2f} ({mid['steps']} steps)", f"{mid['gain_db']:+.2f} dB", "> 0 dB",
                    mid["gain_db"] > 0))
    return out


def run_one(name: str, quick: bool, work: Path, timeout: float) -> dict:
    script, full, small = BENCHES[name]
    out_json = work / f"{name}.json"
    cmd = [sys.executable, str(HERE / script), *(small if quick else full), "--json", str(out_json)]
    print(f"\n===== {name}: {' '.join([Path(cmd[0]).name, *cmd[1:-2]])}", flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "RADAE_QUIET": "1", "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
        rc, text = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        rc, text = None, (e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or ""))
    seconds = time.perf_counter() - t0
    # the JSON dump lines of bench_train / bench_denoise are long; the table above them says the same
    shown = [ln for ln in text.splitlines() if not (ln.startswith("{") and len(ln) > 300)]
    print("\n".join(shown), flush=True)
    status = "timeout" if rc is None else ("ok" if rc == 0 else f"exit {rc}")
    result = json.loads(out_json.read_text()) if out_json.is_file() else None
    print(f"----- {name}: {status} in {seconds:.1f}s", flush=True)
    return {"name": name, "status": status, "seconds": round(seconds, 1), "command": cmd[1:], "result": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes; skip the denoising benchmark")
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=None)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per benchmark")
    ap.add_argument("--json", type=Path, default=None, help="write the table and every benchmark's JSON here")
    args = ap.parse_args(argv)
    names = args.only or [n for n in BENCHES if not (args.quick and n in QUICK_SKIP)]
    gpu = _gpu()
    print(f"radae benchmarks ({'quick' if args.quick else 'full'}): {', '.join(names)}; {os.cpu_count()} CPU cores, "
          f"{'GPU ' + gpu if gpu else 'no GPU (GPU figures are not measured in this run)'}; python {platform.python_version()}; "
          f"load average {_load()}")
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="radae-bench-all-") as tmp:
        for n in names:
            runs.append(run_one(n, args.quick, Path(tmp), args.timeout))
    total = time.perf_counter() - t0

    table = []
    for r in runs:
        if r["result"] is None or r["status"] not in ("ok", "exit 1"):
            table.append((r["name"], "(did not finish)", r["status"], "-", False))
            continue
        try:
            table += [(r["name"], *row) for row in rows_for(r["name"], r["result"])]
        except (KeyError, IndexError, TypeError) as e:
            table.append((r["name"], f"(unreadable result: {e!r})", r["status"], "-", False))
    w = [max(len(str(x[i])) for x in table + [("benchmark", "metric", "value", "goal", "")]) for i in range(4)]
    print(f"\n===== summary ({total:.0f}s total; load average now {_load()}; " + ", ".join(f"{r['name']} {r['seconds']:.0f}s" for r in runs) + ")")
    print(f"{'benchmark':{w[0]}s}  {'metric':{w[1]}s}  {'value':>{w[2]}s}  {'goal':{w[3]}s}  met?")
    for name, metric, value, goal, met in table:
        m = "-" if met is None else ("yes" if met else "NO")
        print(f"{name:{w[0]}s}  {metric:{w[1]}s}  {value:>{w[2]}s}  {goal:{w[3]}s}  {m}")
    missed = [f"{n}: {m}" for n, m, _, _, met in table if met is False]
    print(f"goals missed: {len(missed)}" + (" (" + "; ".join(missed) + ")" if missed else ""))
    if args.json:
        args.json.write_text(json.dumps({
            "quick": args.quick, "cpu_count": os.cpu_count(), "gpu": gpu or None, "total_seconds": round(total, 1),
            "table": [{"benchmark": n, "metric": m, "value": v, "goal": g, "met": met} for n, m, v, g, met in table],
            "runs": runs}, indent=1, default=str))
    failed = [r["name"] for r in runs if r["status"] != "ok" and not (r["name"] == "incremental" and r["status"] == "exit 1")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
