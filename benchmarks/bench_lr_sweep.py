"""Learning-rate sweep of pretraining for a shipped pipeline's model size: which lr converges on its ROI size.

Runs the pipeline's own stages up to preprocess once (``radae run PIPELINE --stages ingest,preprocess``), then
pretrains the configured model at each ``--lrs`` value for the same budget on the same preprocessed data (radae's
``run_training``, validation split and seed as configured) and prints one line per lr::

    lr_sweep: pipeline=<name> model=<kind>:<channels> roi=<z>x<y>x<x> lr=<lr> steps=<n> best_val_loss=<v>
              final_val_loss=<v> gain_db_at_highest=<g> converged=<bool> seconds=<s>

The lr with the lowest best validation loss is the recommendation (``best: lr=...``); results are also written as
JSON (``--json``). Measured results live in ``benchmarks/results/`` (one file per pipeline) and the shipped pipelines'
``pretrain.lr`` follow them.

    python benchmarks/bench_lr_sweep.py pipelines/demo.yaml --lrs 3e-4 1e-3 3e-3 1e-2 --steps 600
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import radae  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--runs", type=Path, default=None, help="runs folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from radae.config import load_pipeline
    from radae.train.loop import run_training

    torch.set_num_threads(1)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="radae_lr_sweep_"))
    base = [f"runs_dir={runs}", *args.overrides]
    cmd = [sys.executable, "-m", "radae.cli", "run", str(args.pipeline), "--stages", "ingest,preprocess", "-q"]
    for o in base:
        cmd += ["--set", o]
    subprocess.run(cmd, check=True)
    results = []
    for lr in args.lrs:
        cfg = load_pipeline(args.pipeline, overrides=base + [f"pretrain.lr={lr}", f"pretrain.steps={args.steps}",
                                                             f"pretrain.eval_every={args.eval_every}", "pretrain.epochs=null",
                                                             "pretrain.max_minutes=null", "pretrain.early_stopping_patience=0",
                                                             f"pretrain.checkpoint_every={args.steps}", "pretrain.preview_every=0"])
        out = runs / f"lr_{lr:g}"
        shutil.rmtree(out, ignore_errors=True)
        (out / "preprocess").mkdir(parents=True)
        for f in (cfg.run_dir / "preprocess").iterdir():
            (out / "preprocess" / f.name).symlink_to(f.resolve())
        t0 = time.perf_counter()
        summ = run_training(cfg, out, quiet=True)
        diag = json.loads((out / "pretrain" / "diagnostics.json").read_text())
        m = cfg.pretrain.model
        row = {"pipeline": cfg.name, "model": f"{m.kind}:{','.join(map(str, m.channels))}",
               "roi": "x".join(map(str, cfg.preprocess.roi_size_vox[::-1])), "lr": lr, "steps": summ["steps_done"],
               "best_val_loss": summ.get("best_val_loss"), "final_val_loss": summ.get("final_val_loss"),
               "gain_db_at_highest": diag.get("denoise_gain_db_at_highest"),
               "converged": diag["convergence"]["converged"], "seconds": round(time.perf_counter() - t0, 1)}
        results.append(row)
        print("lr_sweep: " + " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
    ok = [r for r in results if r["best_val_loss"] is not None]
    if ok:
        best = min(ok, key=lambda r: r["best_val_loss"])
        print(f"best: lr={best['lr']:g} best_val_loss={best['best_val_loss']:.5g}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
