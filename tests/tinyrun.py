"""A tiny demo-like run (synthetic cohort, every stage) shared by the report, reliability and determinism tests.

Built once per session into a temporary folder with `radae run pipelines/demo.yaml`-style
overrides that shrink every stage (few cases, 16³ ROIs, a few training steps, 2-fold CV).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "demo.yaml"


def tiny_overrides(runs_dir: Path, cases: int = 40, steps: int = 6) -> list[str]:
    """``--set`` overrides that shrink pipelines/demo.yaml to seconds (also used by benchmarks/bench_incremental.py)."""
    return [
        f"runs_dir={runs_dir}",
        f"preprocess.cache_dir={runs_dir / 'cache'}",
        f"data.synth.cases={cases}",
        "data.synth.size_vox=32",
        "preprocess.spacing_mm=[1.5,1.5,1.5]",
        "preprocess.roi_size_vox=[16,16,16]",
        "preprocess.patches.per_volume=1",
        "preprocess.n_jobs=1",
        f"pretrain.steps={steps}",
        "pretrain.batch_size=4",
        f"pretrain.eval_every={max(1, steps // 2)}",
        f"pretrain.checkpoint_every={steps}",
        "pretrain.model.channels=[4,8]",
        "pretrain.model.strides=[2,2]",
        "pretrain.model.latent_dim=8",
        "pretrain.amp=false",
        "extract.radiomics.image_types=[Original]",
        "extract.n_jobs=1",
        "benchmark.classification={label: label}",
        "benchmark.survival={time: os_time, event: os_event}",
        "benchmark.feature_sets=[learned, handcrafted, volume]",
        "benchmark.clinical_with=null",  # the demo names sets the tiny run does not have
        "benchmark.models=[logistic_l2]",
        "benchmark.cv={folds: 2, repeats: 1, inner_folds: 2, seed: 0}",
        "benchmark.bootstrap=50",
        "benchmark.robustness={enabled: true, perturbations: [noise], max_lesions: 4}",
        "benchmark.n_jobs=1",
        "benchmark.label_fractions=[0.5, 1.0]",
        "benchmark.label_repeats=1",
    ]


def tiny_config(runs_dir: Path, *extra: str):
    """The validated tiny demo PipelineConfig, with ``extra`` overrides on top."""
    from radae.config import load_pipeline

    return load_pipeline(DEMO, overrides=tiny_overrides(runs_dir) + list(extra))


def runnable_stages() -> list[str]:
    """Registered stages whose upstream stages are registered too (all of them once every stage exists)."""
    from radae.config import STAGES
    from radae.runner import STAGE_REGISTRY
    ok: list[str] = []
    for name in STAGES:
        spec = STAGE_REGISTRY.get(name)
        if spec is not None and all(u in ok for u in spec.upstream):
            ok.append(name)
    return ok


def build_tiny_run(runs_dir: Path, stages: list[str] | None = None) -> Path:
    """Run the tiny demo pipeline into ``runs_dir`` and make sure the report exists; returns the run folder."""
    from radae.report.build import build_report
    from radae.runner import run_pipeline

    cfg = tiny_config(runs_dir, f"stages=[{', '.join(runnable_stages())}]")
    run_pipeline(cfg, stages=stages, quiet=True)
    if not (cfg.run_dir / "report" / "report.html").exists():
        build_report(cfg.run_dir)
    return cfg.run_dir


# ----------------------------------------------------------------------------- the README's tiny-run numbers
README = ROOT / "README.md"
README_START, README_END = "<!-- tiny-run:start -->\n", "\n<!-- tiny-run:end -->"
_METRICS = {"classification": ("auc", "class, AUC"), "survival": ("harrell_c", "OS, Harrell's C")}


def readme_block(run_dir: Path) -> str:
    """The README's tiny-run table from ``<run>/report/summary.json`` (fold-mean metric of every set, first model)."""
    import json

    numbers = json.loads((Path(run_dir) / "report" / "summary.json").read_text())["numbers"]
    values: dict[str, dict[str, float]] = {}  # task label -> feature set -> value
    for task, (metric, label) in _METRICS.items():
        for name, models in sorted((numbers.get(task) or {}).items()):
            if not isinstance(models, dict):
                continue
            model = sorted(k for k in models if isinstance(models[k], dict) and metric in models[k])[:1]
            value = models[model[0]][metric].get("mean") if model else None
            if value is not None:
                values.setdefault(label, {})[name] = value
    sets = sorted({s for v in values.values() for s in v})
    rows = [f"| {label} | " + " | ".join(f"{v[s]:.3f}" if s in v else "-" for s in sets) + " |" for label, v in values.items()]
    head = "| tiny test run (`tests/tinyrun.py`) | " + " | ".join(sets) + " |"
    return "\n".join([head, "|---" * (1 + len(sets)) + "|", *rows])


def readme_quoted_block(text: str | None = None) -> str:
    text = README.read_text() if text is None else text
    if README_START not in text or README_END not in text:
        raise AssertionError("README lost its tiny-run markers")
    return text.split(README_START, 1)[1].split(README_END, 1)[0]


if __name__ == "__main__":  # python tests/tinyrun.py [--write]: rebuild the tiny run, print (or write) the README block
    import os
    import sys
    import tempfile

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("RADAE_QUIET", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as tests/conftest.py: one torch thread, the tests' numerics
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="radae-tiny-") as tmp:
        block = readme_block(build_tiny_run(Path(tmp) / "runs"))
    if "--write" in sys.argv:
        text = README.read_text()
        README.write_text(text.replace(README_START + readme_quoted_block(text) + README_END, README_START + block + README_END))
        print(f"updated {README}")
    print(block)
