"""External validation from a second manifest equals the one-manifest cohort column: same patients, same numbers."""
import json

import numpy as np
import pandas as pd
import pytest
from tests.data.two_cohorts import one_manifest_config, two_manifest_config, write_cohort

from radae.preprocess.items import collect_items, read_rois_index
from radae.runner import run_pipeline
from radae.stages.benchmark import run_benchmark

FAIL = lambda c, m, f: None  # noqa: E731
BENCH = ("benchmark.feature_sets=[learned, handcrafted, volume]", "benchmark.models=[logistic_l2]",
         "benchmark.cv={folds: 3, repeats: 1, inner_folds: 2, seed: 0}", "benchmark.bootstrap=50",
         "benchmark.robustness={enabled: false}", "benchmark.shuffled_control=false", "benchmark.redundancy=false")


def _features(run_dir, seed: int = 0) -> None:
    """extract/latent.parquet and radiomics.parquet: the same values per case_id in every run (seeded, by sorted id);
    latent_000 and original_firstorder_Mean carry the label, the rest is noise."""
    cases = pd.read_parquet(run_dir / "ingest" / "cases.parquet").sort_values("case_id").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    y = cases["label"].to_numpy(float)
    ids = cases[["case_id", "patient_id"]]
    lat = pd.DataFrame(rng.normal(size=(len(cases), 6)), columns=[f"latent_{j:03d}" for j in range(6)])
    lat["latent_000"] += 1.5 * y
    rad = pd.DataFrame({"original_firstorder_Mean": y + rng.normal(size=len(cases)),
                        **{f"original_glcm_Noise{j}": rng.normal(size=len(cases)) for j in range(4)}})
    (run_dir / "extract").mkdir(exist_ok=True)
    pd.concat([ids, lat], axis=1).to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    pd.concat([ids, rad], axis=1).to_parquet(run_dir / "extract" / "radiomics.parquet", index=False)


def _run(cfg) -> dict:
    """Real ingest and preprocess; the pretraining exclusion as collect_items states it; synthetic features; benchmark."""
    run_pipeline(cfg, stages=["ingest", "preprocess"], quiet=True)
    split = collect_items(read_rois_index(cfg.run_dir / "preprocess" / "rois.parquet"), cfg, (16, 16, 16), FAIL)
    (cfg.run_dir / "pretrain").mkdir(exist_ok=True)
    (cfg.run_dir / "pretrain" / "summary.json").write_text(json.dumps(split.info))
    _features(cfg.run_dir)
    (cfg.run_dir / "benchmark").mkdir(exist_ok=True)
    return run_benchmark(cfg.run_dir, cfg, cfg.seed, FAIL, cfg.run_dir / "benchmark")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ext2")
    write_cohort(tmp / "cohort")
    one = _run(one_manifest_config(tmp / "cohort", tmp / "runs", overrides=BENCH))
    two = _run(two_manifest_config(tmp / "cohort", tmp / "runs", overrides=BENCH))
    return tmp / "runs", one, two


@pytest.mark.slow  # two small benchmark runs on a real ingest + preprocess of 40 synthetic patients
def test_second_manifest_gives_the_same_external_validation(both):
    runs, one, two = both
    files = sorted(p.relative_to(runs / "one") for p in (runs / "one" / "benchmark").rglob("*") if p.is_file())
    files_two = sorted(p.relative_to(runs / "two") for p in (runs / "two" / "benchmark").rglob("*") if p.is_file())
    assert files == files_two and len(files) >= 26
    assert {"benchmark/external/metrics.csv", "benchmark/cv_results.parquet", "benchmark/roc_bands.parquet"} <= set(map(str, files))
    for f in files:  # every table, model and card byte for byte; the summary differs in the cohort names only
        if f.name != "summary.json":
            assert (runs / "one" / f).read_bytes() == (runs / "two" / f).read_bytes(), f
    assert one["external"]["split"] | {"develop": ["development"], "validate": ["validation"]} == two["external"]["split"]
    assert json.dumps(one).replace('"a"', '"development"').replace('"b"', '"validation"') == json.dumps(two)
    m = pd.read_csv(runs / "two" / "benchmark" / "external" / "metrics.csv").set_index(["task", "feature_set", "metric"])
    assert len(m) == 24 and abs(m.loc[("classification", "learned", "auc"), "estimate"] - 0.8081) < 1e-4  # planted signal, one score per patient
    split = two["external"]["split"]
    assert (split["n_develop_patients"], split["n_validate_patients"]) == (20, 20)
    assert split["encoder"] == ("The encoder was pretrained without any of the 20 validation patients (pretraining excluded "
                                "20 evaluation patients; checked).")


@pytest.mark.slow
def test_report_says_where_the_validation_cohort_came_from(both):
    from radae.report.artifacts import RunFolder
    from radae.report.blocks import Paragraph
    from radae.report.keys import KeyNumbers
    from radae.report.sections.context import Context
    from radae.report.sections.data import data_section

    runs, _, _ = both
    data = {"validation_manifest": "validation.csv", "cohort_column": "cohort"}
    ctx = Context(run=RunFolder(runs / "two"), keys=KeyNumbers(), cfg={"data": data, "pretrain": {}})
    text = " ".join(str(b.html) for b in data_section(ctx).blocks if isinstance(b, Paragraph))
    assert ("The validation cohort comes from its own manifest (data.validation_manifest, column cohort = validation): "
            '<span class="num" data-key="data.validation_patients">20</span> patients, every one an evaluation patient '
            "(held out of pretraining); the other 20 patients are the development cohort.") in text, text
    assert ctx.keys.flat()["data.evaluation_patients"] == 20
