"""Incremental re-runs: the demo pipeline (shrunk) cold, then unchanged, then with one ``benchmark.*`` key changed.

Builds ``pipelines/demo.yaml`` with ``--set``-style overrides (:func:`radae.config.load_pipeline`) that shrink every
stage like ``tests/tinyrun.py::tiny_overrides`` (few small synthetic cases, a few training steps, 2-fold
CV), into a temporary ``runs_dir``, and times three calls of :func:`radae.runner.run_pipeline`:

1. cold: every stage runs
2. unchanged: nothing should run (goal: wall time <= 5 % of the cold run)
3. ``benchmark.bootstrap`` changed: only ``benchmark`` and ``report`` should run

Which stages ran is read from each stage's ``_stage.json`` (a stage that ran has a new ``key``/``seconds``; the
file's mtime changes) and cross-checked with the runner's own record (``ctx.extra['ran']``).

    python benchmarks/bench_incremental.py
    python benchmarks/bench_incremental.py --cases 40 --steps 20 --json out.json
"""
from __future__ import annotations

import argparse
import json
import logging
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
DEMO = ROOT / "pipelines" / "demo.yaml"
GOAL_FRACTION = 0.05


def shrunk_overrides(runs_dir: Path, cases: int, steps: int) -> list[str]:
    """The test suite's tiny demo (tests/tinyrun.py), so benchmark and tests shrink the demo the same way."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tinyrun import tiny_overrides

    return tiny_overrides(runs_dir, cases=cases, steps=steps)


def stage_state(run_dir: Path, stages) -> dict[str, dict]:
    out = {}
    for s in stages:
        p = run_dir / s / "_stage.json"
        try:
            meta = json.loads(p.read_text())
            out[s] = {"mtime_ns": p.stat().st_mtime_ns, "key": meta.get("key"), "seconds": meta.get("seconds"),
                      "status": meta.get("status")}
        except (OSError, ValueError):
            out[s] = {"mtime_ns": None, "key": None, "seconds": None, "status": None}
    return out


def timed_run(cfg) -> tuple[float, list[str], list[str], dict]:
    from radae.runner import run_pipeline

    before = stage_state(cfg.run_dir, cfg.stages)
    t0 = time.perf_counter()
    ctx = run_pipeline(cfg, quiet=True)
    seconds = time.perf_counter() - t0
    after = stage_state(cfg.run_dir, cfg.stages)
    rewritten = [s for s in cfg.stages if after[s]["mtime_ns"] != before[s]["mtime_ns"]]
    return seconds, list(ctx.extra.get("ran", [])), rewritten, after


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=40, help="synthetic labelled patients")
    ap.add_argument("--steps", type=int, default=6, help="pretraining steps")
    ap.add_argument("--change", default="benchmark.bootstrap=60", help="the benchmark.* override of the third run")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.change.startswith("benchmark."):
        ap.error("--change must set a benchmark.* key")
    os.environ.setdefault("RADAE_QUIET", "1")
    logging.getLogger("radae").setLevel(logging.ERROR)  # per-case warnings of the synthetic cohort

    from radae.config import load_pipeline

    tmp = tempfile.TemporaryDirectory(prefix="radae-incr-") if args.workdir is None else None
    runs_dir = Path(tmp.name) if tmp else args.workdir
    try:
        base = shrunk_overrides(runs_dir, args.cases, args.steps)
        cfg = load_pipeline(DEMO, overrides=base)
        cold_s, cold_ran, cold_rw, cold_state = timed_run(cfg)
        same_s, same_ran, same_rw, _ = timed_run(load_pipeline(DEMO, overrides=base))
        cfg3 = load_pipeline(DEMO, overrides=base + [args.change])
        chg_s, chg_ran, chg_rw, chg_state = timed_run(cfg3)
    finally:
        if tmp:
            tmp.cleanup()

    stages = list(cfg.stages)
    expected_chg = ["benchmark", "report"]
    frac = same_s / cold_s
    ok_cold = cold_ran == stages
    ok_same = same_ran == [] and same_rw == []
    ok_chg = chg_ran == expected_chg and chg_rw == expected_chg
    print(f"demo pipeline, shrunk ({args.cases} cases, {args.steps} pretraining steps), stages {', '.join(stages)}")
    print(f"  {'run':28s} {'wall s':>7s}  stages that ran (runner / _stage.json rewritten)")
    print(f"  {'1 cold':28s} {cold_s:7.2f}  {','.join(cold_ran)} / {','.join(cold_rw)}")
    print(f"  {'2 unchanged':28s} {same_s:7.2f}  {','.join(same_ran) or '-'} / {','.join(same_rw) or '-'}")
    print(f"  {'3 ' + args.change:28s} {chg_s:7.2f}  {','.join(chg_ran) or '-'} / {','.join(chg_rw) or '-'}")
    print("  cold run per stage (s, from _stage.json): "
          + ", ".join(f"{s} {cold_state[s]['seconds']}" for s in stages))
    print(f"  changed run per stage (s): " + ", ".join(f"{s} {chg_state[s]['seconds']}" for s in chg_ran))
    print(f"ratio: unchanged re-run / cold run: {100 * frac:.1f}% (goal <= {100 * GOAL_FRACTION:.0f}%: "
          f"{'met' if frac <= GOAL_FRACTION and ok_same else 'MISSED'})")
    print(f"ratio: {args.change} re-run / cold run: {100 * chg_s / cold_s:.1f}%; only benchmark+report re-ran: "
          f"{'yes' if ok_chg else 'NO (' + ','.join(chg_ran) + ')'}")
    out = {"cases": args.cases, "steps": args.steps, "stages": stages, "cold_s": cold_s, "unchanged_s": same_s,
           "changed_s": chg_s, "change": args.change, "unchanged_fraction": frac, "cold_ran": cold_ran,
           "unchanged_ran": same_ran, "changed_ran": chg_ran, "changed_rewritten": chg_rw,
           "cold_stage_seconds": {s: cold_state[s]["seconds"] for s in stages},
           "changed_stage_seconds": {s: chg_state[s]["seconds"] for s in chg_ran},
           "cold_all_ran": ok_cold, "unchanged_nothing_ran": ok_same, "changed_only_benchmark_report": ok_chg}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if ok_same and ok_chg else 1


if __name__ == "__main__":
    sys.exit(main())
