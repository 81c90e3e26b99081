"""External validation: locked models on a second cohort, the encoder check, radae predict, decision curves."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.evaluate.benchmark_synth import make_run, pipeline_config
from typer.testing import CliRunner

from radae.cli import app
from radae.util.errors import BenchmarkError
from radae.evaluate import decision, external, locked_model
from radae.stages.benchmark import run_benchmark

FAIL = lambda c, m, f: None  # noqa: E731


def _external_run(run_dir: Path, seed: int = 0, n: int = 90, b_is_eval: bool = True, pretrain: dict | None = None,
                  multi_fraction: float = 0.0):
    cases = make_run(run_dir, n_patients=n, multi_fraction=multi_fraction, seed=seed, signal=3.0)
    pid = cases["patient_id"].str[1:].astype(int)
    cases["cohort"] = np.where(pid % 2 == 0, "A", "B")
    cases["is_evaluation"] = (cases["cohort"] == "B") & b_is_eval
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    (run_dir / "pretrain").mkdir(exist_ok=True)
    summ = {"include_evaluation_patients": False, "excluded_evaluation_patients": int(cases["is_evaluation"].sum())} if pretrain is None else pretrain
    (run_dir / "pretrain" / "summary.json").write_text(json.dumps(summ))
    return cases


def _cfg(run_dir, **kw):
    base = dict(feature_sets=["learned", "handcrafted"], survival={"time": "os_time", "event": "os_event"},
                shuffled_control=False, redundancy=False, external={"column": "cohort", "develop": ["A"], "validate": ["B"]})
    base.update(kw)
    return pipeline_config(run_dir, **base)


@pytest.fixture(scope="module")
def ext_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ext") / "run"
    _external_run(run_dir)
    out = run_dir / "benchmark"
    out.mkdir()
    summary = run_benchmark(run_dir, _cfg(run_dir), 0, FAIL, out)
    return run_dir, summary


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_locked_models_validated_once_on_the_second_cohort(ext_run):
    run_dir, summary = ext_run
    ext = summary["external"]
    assert summary["cohort"] == "external_development" and summary["n_patients"] == 45  # CV saw cohort A only
    assert ext["split"]["n_validate_patients"] == 45 and "checked" in ext["encoder"]
    auc = ext["results"]["classification"]["learned"]["logistic_l2"]
    assert auc["auc"]["ci_method"] == "delong" and auc["auc"]["ci_low"] < auc["auc"]["estimate"] < auc["auc"]["ci_high"]
    assert auc["auc"]["estimate"] > 0.75 and auc["auc_bootstrap"]["n_boot"] > 0  # planted signal in latent_000
    c = ext["results"]["survival"]["learned"]["cox_enet"]["harrell_c"]
    assert c["estimate"] > 0.6 and c["ci_low"] < c["estimate"]
    for name in ("classification__learned__logistic_l2", "survival__handcrafted__cox_enet"):
        card = json.loads((run_dir / "benchmark" / "models" / f"{name}.json").read_text())
        assert card["versions"]["sklearn"] and card["versions"]["radae"] and len(card["training_cohort_sha256"]) == 64
        assert card["n_train_patients"] == 45 and set(card["model_features"]) <= set(card["input_columns"])
    card = json.loads((run_dir / "benchmark" / "models" / "classification__learned__logistic_l2.json").read_text())
    assert "latent_000" in card["coefficients"] and card["events_per_predictor"] == card["events"] / card["candidate_predictors"]
    ext_dir = run_dir / "benchmark" / "external"
    m = pd.read_csv(ext_dir / "metrics.csv")
    assert {"auc", "auc_bootstrap", "calibration_slope", "brier", "harrell_c", "uno_c"} <= set(m["metric"])
    dc = pd.read_parquet(ext_dir / "decision_curve.parquet")
    assert set(dc["strategy"]) == {"model", "all", "none"}
    assert len(pd.read_parquet(ext_dir / "calibration.parquet")) > 0
    assert summary["sample_size"]["classification"]["learned"]["candidate_predictors"] == 8


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_predict_round_trips_the_stage_predictions(ext_run, tmp_path):
    run_dir, _ = ext_run
    ext_dir = run_dir / "benchmark" / "external"
    stage = pd.read_parquet(ext_dir / "predictions.parquet")
    stage = stage[(stage["task"] == "classification") & (stage["feature_set"] == "learned")]
    # a fresh table: the feature file rewritten with its columns reversed
    fresh = pd.read_parquet(ext_dir / "features__learned.parquet")
    fresh[list(fresh.columns[::-1])].to_parquet(tmp_path / "new.parquet", index=False)
    out = tmp_path / "pred.csv"
    model = run_dir / "benchmark" / "models" / "classification__learned__logistic_l2.joblib"
    r = CliRunner().invoke(app, ["predict", str(model), "--features", str(tmp_path / "new.parquet"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out, dtype={"case_id": str}, float_precision="round_trip")
    assert got["case_id"].tolist() == stage["case_id"].tolist()
    assert np.array_equal(got["score"].to_numpy(), stage["score"].to_numpy())  # bit-identical
    # rows in another order: equal up to BLAS summation order (1 ulp)
    shuffled = locked_model.predict_table(locked_model.load_model(model), fresh.sample(frac=1.0, random_state=1)).set_index("case_id")
    assert np.allclose(shuffled.loc[stage["case_id"], "score"].to_numpy(), stage["score"].to_numpy(), rtol=0, atol=1e-12)



@pytest.mark.slow
def test_survival_models_score_patients_and_round_trip(tmp_path):
    """With several lesions per patient the locked Cox model is fitted on one row per patient; predict scores each
    patient's mean row and gives it to every lesion, as the stage did."""
    run_dir = tmp_path / "run"
    cases = _external_run(run_dir, n=60, multi_fraction=0.5)
    assert cases["patient_id"].duplicated().any()
    (run_dir / "benchmark").mkdir()
    run_benchmark(run_dir, _cfg(run_dir, feature_sets=["learned"]), 0, FAIL, run_dir / "benchmark")
    ext_dir = run_dir / "benchmark" / "external"
    stage = pd.read_parquet(ext_dir / "predictions.parquet")
    stage = stage[(stage["task"] == "survival") & (stage["feature_set"] == "learned")]
    bundle = locked_model.load_model(run_dir / "benchmark" / "models" / "survival__learned__cox_enet.joblib")
    fresh = pd.read_parquet(ext_dir / "features__learned.parquet")
    assert fresh["patient_id"].duplicated().any() and bundle["card"]["rows"] == "patient_mean"
    got = locked_model.predict_table(bundle, fresh)
    assert got["case_id"].tolist() == stage["case_id"].tolist()
    assert np.allclose(got["score"].to_numpy(), stage["score"].to_numpy(), rtol=0, atol=1e-12)
    assert (got.groupby("patient_id")["score"].nunique() == 1).all()  # one risk per patient
    cols = bundle["card"]["input_columns"]
    one = fresh.groupby("patient_id", sort=False)[cols].mean()  # the patient's mean row, scored alone
    direct = locked_model.score(bundle["pipeline"], one.to_numpy(), "survival")
    assert np.allclose(got.drop_duplicates("patient_id")["score"].to_numpy(), direct, rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("edit,message", [
    (lambda t: t.drop(columns=["latent_003"]), "missing (first: 'latent_003')"),
    (lambda t: t.assign(original_glcm_X=1.0), "not trained on (first: 'original_glcm_X')"),
])
def test_predict_schema_errors_are_one_line(ext_run, tmp_path, edit, message):
    run_dir, _ = ext_run
    t = edit(pd.read_parquet(run_dir / "benchmark" / "external" / "features__learned.parquet"))
    t.to_parquet(tmp_path / "t.parquet", index=False)
    model = run_dir / "benchmark" / "models" / "classification__learned__logistic_l2.joblib"
    r = CliRunner().invoke(app, ["predict", str(model), "--features", str(tmp_path / "t.parquet")])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_predict_refuses_other_radae_or_encoder_version(ext_run):
    run_dir, _ = ext_run
    bundle = locked_model.load_model(run_dir / "benchmark" / "models" / "classification__learned__logistic_l2.joblib")
    t = pd.read_parquet(run_dir / "benchmark" / "external" / "features__learned.parquet")
    with pytest.raises(BenchmarkError, match="radae 9.9"):
        locked_model.predict_table(bundle, t, {"versions": {"radae": "9.9"}}, "t")
    card = {**bundle["card"], "encoder_checkpoint_sha256": "a" * 64}
    with pytest.raises(BenchmarkError, match="encoder checkpoint bbbbbbbbbbbb"):
        locked_model.predict_table({**bundle, "card": card}, t, {"checkpoint_sha256": "b" * 64}, "t")


@pytest.mark.parametrize("b_is_eval,pretrain,message", [
    (False, None, "is not an evaluation patient"),
    (True, {"include_evaluation_patients": True}, "pretraining included"),
])
def test_refuses_a_validation_cohort_the_encoder_saw(tmp_path, b_is_eval, pretrain, message):
    run_dir = tmp_path / "run"
    _external_run(run_dir, n=30, b_is_eval=b_is_eval, pretrain=pretrain)
    (run_dir / "benchmark").mkdir()
    with pytest.raises(BenchmarkError, match=message):
        run_benchmark(run_dir, _cfg(run_dir), 0, FAIL, run_dir / "benchmark")
    (run_dir / "pretrain" / "summary.json").unlink()
    with pytest.raises(BenchmarkError, match="pretrain/summary.json is missing"):
        run_benchmark(run_dir, _cfg(run_dir), 0, FAIL, run_dir / "benchmark")


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_handcrafted_only_needs_no_encoder_check(tmp_path):
    run_dir = tmp_path / "run"
    _external_run(run_dir, n=40, b_is_eval=False)
    (run_dir / "pretrain" / "summary.json").unlink()
    (run_dir / "benchmark").mkdir()
    s = run_benchmark(run_dir, _cfg(run_dir, feature_sets=["handcrafted"], survival=None), 0, FAIL, run_dir / "benchmark")
    assert s["external"]["encoder"].startswith("No learned features")


def test_cohort_masks_errors():
    rows = pd.DataFrame({"patient_id": ["1", "1", "2"], "cohort": ["A", "B", "B"]})
    with pytest.raises(BenchmarkError, match="patient '1' has rows in both"):
        external.cohort_masks(rows, "cohort", ("a",), ("b",))
    with pytest.raises(BenchmarkError, match="no row has cohort in"):
        external.cohort_masks(rows, "cohort", ("c",), ("b",))


def test_net_benefit_matches_dcurves():
    dcurves = pytest.importorskip("dcurves")
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p).astype(int)
    t = np.round(np.arange(0.05, 0.95, 0.05), 2)
    ref = dcurves.dca(data=pd.DataFrame({"y": y, "p": p}), outcome="y", modelnames=["p"], thresholds=t)
    ours = decision.net_benefit_table(y, p, t)
    for ours_name, ref_name in (("model", "p"), ("all", "all"), ("none", "none")):
        r = ref[ref["model"] == ref_name].sort_values("threshold")["net_benefit"].to_numpy()
        o = ours[ours["strategy"] == ours_name].sort_values("threshold")["net_benefit"].to_numpy()
        assert np.allclose(o, r, atol=1e-12), ours_name


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_harmonised_external_run_and_predict_with_the_batch_column(tmp_path):
    run_dir = tmp_path / "run"
    cases = _external_run(run_dir, n=60)
    cases["site"] = np.where(cases["patient_id"].str[1:].astype(int) % 3 == 0, "s2", "s1")
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    lat = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    s2 = lat["case_id"].isin(cases.loc[cases["site"] == "s2", "case_id"]).to_numpy()
    cols = [c for c in lat.columns if c.startswith("latent_")]
    lat.loc[s2, cols] = lat.loc[s2, cols] * 2.0 + 3.0  # planted site effect on every latent
    lat.to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    (run_dir / "benchmark").mkdir()
    s = run_benchmark(run_dir, _cfg(run_dir, feature_sets=["learned"], survival=None, harmonise={"batch": "site"}), 0, FAIL,
                      run_dir / "benchmark")
    assert s["external"]["results"]["classification"]["learned"]["logistic_l2"]["auc"]["estimate"] > 0.7
    model = run_dir / "benchmark" / "models" / "classification__learned__logistic_l2.joblib"
    bundle = locked_model.load_model(model)
    assert bundle["card"]["harmonise"] == {"batch": "site", "labels": ["s1", "s2"]} and bundle["card"]["preprocessing"][0] == "harmonise"
    feats = pd.read_parquet(run_dir / "benchmark" / "external" / "features__learned.parquet")
    stage = pd.read_parquet(run_dir / "benchmark" / "external" / "predictions.parquet")
    assert np.array_equal(locked_model.predict_table(bundle, feats)["score"].to_numpy(), stage["score"].to_numpy())
    with pytest.raises(BenchmarkError, match="missing .*'site'"):
        locked_model.predict_table(bundle, feats.drop(columns=["site"]))
    with pytest.raises(BenchmarkError, match="'s3' was not in the development cohort"):
        locked_model.predict_table(bundle, feats.assign(site="s3"))


@pytest.mark.slow  # one small benchmark run (~30 s on an idle core), shared by the module
def test_report_section_states_the_external_numbers(ext_run):
    from radae.report.artifacts import RunFolder
    from radae.report.blocks import Figure, Table
    from radae.report.sections.external import external_section
    from radae.report.keys import KeyNumbers
    from radae.report.sections.context import Context

    run_dir, summary = ext_run
    ctx = Context(run=RunFolder(run_dir), keys=KeyNumbers(), cfg={"benchmark": {"external": {"column": "cohort"}}})
    sec = external_section(ctx)
    flat = ctx.keys.flat()
    want = summary["external"]["results"]["classification"]["learned"]["logistic_l2"]["auc"]["estimate"]
    assert abs(flat["external.classification.learned.logistic_l2.auc"] - want) < 1e-3
    assert flat["external.n_validate_patients"] == 45
    tables = [b for b in sec.blocks if isinstance(b, Table)]
    assert any("TRIPOD" in "".join(map(str, t.rows)) or t.columns[0] == "item" for t in tables)
    figs = [b for b in sec.blocks if isinstance(b, Figure)]
    assert len(figs) == 4  # calibration and decision curves, classification and survival (at the development horizon)
    assert sum("survival" in str(f.alt) for f in figs) == 2, [f.alt for f in figs]
    epv = [t for t in tables if "events per predictor" in t.columns][0]
    assert all(r[5] for r in epv.rows)  # 8 predictors, < 23 events: every set is flagged


def test_external_config_round_trips_and_refuses_overlap(tmp_path):
    cfg = pipeline_config(tmp_path / "r", external={"column": "is_evaluation", "develop": [False], "validate": [True]})
    dumped = cfg.model_dump(mode="json")["benchmark"]["external"]
    assert dumped == {"column": "is_evaluation", "develop": ["false"], "validate": ["true"]}  # YAML spelling, reloadable
    assert type(cfg).model_validate(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(Exception, match="in both develop and validate"):
        pipeline_config(tmp_path / "r", external={"column": "c", "develop": ["A"], "validate": ["a"]})
