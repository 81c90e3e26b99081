"""The benchmark stage on synthetic run folders: planted signal, controls, outputs, refusals, robustness path."""
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from tests.evaluate.benchmark_synth import make_run, pipeline_config

from radae.config import PipelineConfig
from radae.util.errors import BenchmarkError
from radae.evaluate.cohort import load_cohort
from radae.evaluate.comparisons import COLUMNS as COMPARISON_COLUMNS
from radae.evaluate.curves import BAND_COLUMNS, roc_bands
from radae.stages.benchmark import run_benchmark


def _run(run_dir, cfg, extractor=None):
    fails = []
    summary = run_benchmark(run_dir, cfg, 0, lambda c, m, f: fails.append((c, m)), run_dir / "benchmark", extractor)
    return summary, fails


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One benchmark over a 60-patient synthetic cohort (some patients with two lesions), both tasks."""
    run_dir = tmp_path_factory.mktemp("bench") / "demo"
    make_run(run_dir, n_patients=60, seed=0)
    cfg = pipeline_config(
        run_dir,
        survival={"time": "os_time", "event": "os_event", "horizons": [30, 60]},
        feature_sets=["learned", "handcrafted", "volume"],
        cv={"folds": 3, "repeats": 2, "inner_folds": 2, "seed": 0},
    )
    summary, fails = _run(run_dir, cfg)
    return run_dir, summary, fails


def test_planted_signal_recovered_with_chance_level_control(demo_run):
    run_dir, s, fails = demo_run
    assert fails == []
    cls = s["classification"]["results"]
    assert cls["learned"]["logistic_l2"]["auc"]["mean"] > 0.75
    assert cls["learned"]["logistic_l2"]["auc"]["ci_low"] > 0.5
    assert cls["handcrafted"]["logistic_l2"]["auc"]["mean"] > 0.65
    # volume is noise here
    assert abs(cls["volume"]["logistic_l2"]["auc"]["mean"] - 0.5) < 0.2
    control = [v["logistic_l2"]["auc"]["mean"] for v in s["classification"]["shuffled_control"].values()]
    assert len(control) == 3 and abs(np.mean(control) - 0.5) < 0.15
    surv = s["survival"]["results"]
    assert surv["learned"]["cox_enet"]["harrell_c"]["mean"] > 0.65
    assert s["survival"]["horizons"] == [30.0, 60.0]
    ctrl_c = [v["cox_enet"]["harrell_c"]["mean"] for v in s["survival"]["shuffled_control"].values()]
    assert abs(np.mean(ctrl_c) - 0.5) < 0.15
    assert s["classification"]["best"]["feature_set"] in ("learned", "handcrafted")
    assert "learned" in s["headline"] and "shuffled-label control" in s["headline"]


def test_outputs_follow_the_documented_layout(demo_run):
    run_dir, s, _ = demo_run
    out = run_dir / "benchmark"
    cvr = pd.read_parquet(out / "cv_results.parquet")
    assert {"task", "feature_set", "model", "control", "repeat", "fold", "metric", "value", "n_train", "n_test",
            "n_features", "best_params"} <= set(cvr.columns)
    per_fold = cvr[(cvr.fold >= 0) & ~cvr.control & (cvr.task == "classification")]
    assert len(per_fold.groupby(["feature_set", "repeat", "fold"])) == 3 * 2 * 3
    assert {"auc", "balanced_accuracy", "brier", "calibration_slope", "calibration_intercept"} <= set(per_fold.metric)
    surv_metrics = set(cvr[cvr.task == "survival"].metric)
    assert {"harrell_c", "uno_c", "td_auc@30", "td_auc@60", "td_auc_mean", "ibs", "logrank_p"} <= surv_metrics

    pred = pd.read_parquet(out / "predictions.parquet")
    main = pred[(pred.task == "classification") & ~pred.control & (pred.feature_set == "learned")]
    n_rows = s["classification"]["n_rows"]
    assert len(main) == n_rows * 2  # every row predicted once per repeat
    # a patient's lesions are always in the same fold
    assert (main.groupby(["repeat", "patient_id"])["fold"].nunique() == 1).all()
    cases = pd.read_parquet(run_dir / "ingest" / "cases.parquet")
    merged = main.merge(cases[["case_id", "label"]], on="case_id", suffixes=("", "_true"))
    assert (merged["label"] == merged["label_true"]).all()

    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp.columns) == COMPARISON_COLUMNS
    # one test per pair (no DeLong on averaged out-of-fold scores inside CV); 60 patients -> the calibrated t-test
    assert set(comp.test) == {"corrected_t_calibrated"}
    cls = comp[comp.task == "classification"]
    assert len(cls) == 3 and not cls.duplicated(["model", "set_a", "set_b"]).any()
    assert (comp.p_holm >= comp.p_raw - 1e-12).all() and (comp.p_bh >= comp.p_raw - 1e-12).all()
    # the primary family: learned vs handcrafted (oriented as declared) + nothing else (no other learned set here)
    prim = cls[cls.role == "primary"]
    assert list(zip(prim.set_a, prim.set_b)) == [("learned", "handcrafted")]
    assert prim.p_adjusted.iloc[0] == pytest.approx(prim.p_raw.iloc[0])  # a family of one is not adjusted
    expl = cls[cls.role == "exploratory"]
    assert np.allclose(expl.p_adjusted, expl.p_bh)
    assert s["comparisons"]["n_significant"] == int(comp.significant.sum())
    block = s["classification"]["primary"]
    assert block["family_size"] == 1 and block["sentence"].startswith("Primary comparison (AUC, family of 1): learned")
    assert block["permutation"]["status"] == "skipped"
    assert "Primary comparison" in s["headline"]

    km = pd.read_parquet(out / "km.parquet")
    assert set(km.group) == {"high", "low"} and set(km.feature_set) == {"learned", "handcrafted", "volume"}
    red = pd.read_parquet(out / "redundancy.parquet")
    top = red.loc[red[red.latent == "latent_000"].abs_rho.idxmax()]
    assert top.feature == "original_firstorder_Mean"  # the planted shared factor
    assert red.is_volume.sum() == red.latent.nunique()

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["schema_version"] == 1
    assert on_disk["unit"] == "lesion" and on_disk["cohort"] == "all"
    assert on_disk["robustness"]["status"] == "skipped"
    assert set(on_disk["feature_sets"]) == {"learned", "handcrafted", "volume"}
    assert on_disk["feature_sets"]["handcrafted"]["n_features"] == 9  # diagnostics_ column left out


def test_roc_bands_cover_the_primary_sets_by_patient(demo_run):
    """roc_bands.parquet: the primary pair only (not volume), 101 grid points, benchmark.bootstrap resamples of patients."""
    run_dir, s, _ = demo_run
    out = run_dir / "benchmark"
    bands = pd.read_parquet(out / "roc_bands.parquet")
    assert list(bands.columns) == BAND_COLUMNS
    assert list(dict.fromkeys(zip(bands.feature_set, bands.model))) == [("learned", "logistic_l2"), ("handcrafted", "logistic_l2")]
    assert len(bands) == 2 * 101 and (bands.n_boot == 50).all() and set(bands.repeat) == {0}
    preds = pd.read_parquet(out / "predictions.parquet")
    pd.testing.assert_frame_equal(bands, roc_bands(preds, ["learned", "handcrafted"], 50, 0, 0))
    # some patients have two lesions: a row bootstrap of the same predictions gives other bands
    first = preds[(preds.task == "classification") & ~preds.control & (preds.repeat == 0)]
    assert first.groupby(["feature_set", "patient_id"]).size().max() == 2
    by_row = roc_bands(preds.assign(patient_id=[f"r{i}" for i in range(len(preds))]), ["learned", "handcrafted"], 50, 0, 0)
    assert not np.array_equal(by_row.tpr_lower.to_numpy(), bands.tpr_lower.to_numpy())
    assert np.all(bands.tpr_lower <= bands.tpr) and np.all(bands.tpr <= bands.tpr_upper)


def test_same_seed_gives_identical_results(tmp_path, demo_run):
    run_dir, s, _ = demo_run
    cfg = pipeline_config(run_dir, feature_sets=["learned", "volume"], bootstrap=20, shuffled_control=False)
    a, _ = _run(run_dir, cfg)
    first = pd.read_parquet(run_dir / "benchmark" / "predictions.parquet")
    first_bands = pd.read_parquet(run_dir / "benchmark" / "roc_bands.parquet")
    b, _ = _run(run_dir, cfg)
    pd.testing.assert_frame_equal(first, pd.read_parquet(run_dir / "benchmark" / "predictions.parquet"))
    pd.testing.assert_frame_equal(first_bands, pd.read_parquet(run_dir / "benchmark" / "roc_bands.parquet"))
    assert len(first_bands) == 2 * 101  # no primary pair (no handcrafted): every set, as the report shows them
    assert a == b


def test_clinical_sets_and_voxel_pca(tmp_path):
    run_dir = tmp_path / "clin"
    make_run(run_dir, n_patients=40, multi_fraction=0.0, seed=3)
    cfg = pipeline_config(run_dir, feature_sets=["volume", "voxel_pca", "clinical"], clinical=["age", "sex"],
                          shuffled_control=False, bootstrap=0, voxel_pca_components=4, voxel_grid_vox=4)
    s, _ = _run(run_dir, cfg)
    assert set(s["feature_sets"]) == {"volume", "voxel_pca", "clinical", "clinical+volume"}
    assert s["feature_sets"]["clinical"]["n_features"] == 3  # age + sex=F + sex=M
    assert s["feature_sets"]["voxel_pca"]["n_features"] == 2 * 4**3
    # the ROI images carry the planted factor, so voxel PCA finds it
    assert s["classification"]["results"]["voxel_pca"]["logistic_l2"]["auc"]["mean"] > 0.6
    assert s["unit"] == "patient"


@pytest.mark.parametrize("how", ["largest", "volume_weighted_mean"])
def test_aggregation_to_patients(tmp_path, how):
    run_dir = tmp_path / how
    cases = make_run(run_dir, n_patients=30, multi_fraction=0.5, seed=1)
    cfg = pipeline_config(run_dir, feature_sets=["learned", "volume"])
    cfg = cfg.model_copy(update={"extract": cfg.extract.model_copy(update={"aggregate": how})})
    cohort = load_cohort(run_dir, cfg)
    assert cohort.unit == "patient"
    assert len(cohort.rows) == cases["patient_id"].nunique() == 30
    assert cohort.rows["patient_id"].is_unique
    lat = pd.read_parquet(run_dir / "extract" / "latent.parquet").set_index("case_id")
    rois = pd.read_parquet(run_dir / "preprocess" / "rois.parquet").set_index("case_id")
    two = cases["patient_id"].value_counts().index[0]
    ids = cases.loc[cases.patient_id == two, "case_id"].to_numpy()
    vol = rois.loc[ids, "lesion_volume_ml"].to_numpy()
    row = int(np.flatnonzero(cohort.rows["patient_id"].to_numpy() == two)[0])
    got = cohort.sets["learned"].X[row, 0]
    if how == "largest":
        assert got == pytest.approx(lat.loc[ids[np.argmax(vol)], "latent_000"])
    else:
        assert got == pytest.approx(np.average(lat.loc[ids, "latent_000"], weights=vol))
    # lesions map to their patient's row
    assert set(cohort.lesions.loc[cohort.lesions.case_id.isin(ids), "row"]) == {row}


def test_aggregation_refuses_outcomes_that_differ_within_a_patient(tmp_path):
    run_dir = tmp_path / "conflict"
    cases = make_run(run_dir, n_patients=20, multi_fraction=1.0, seed=0)
    cases.loc[cases.case_id.str.endswith("_L1"), "label"] = 1 - cases.loc[cases.case_id.str.endswith("_L1"), "label"]
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    cfg = pipeline_config(run_dir, feature_sets=["learned"])
    cfg = cfg.model_copy(update={"extract": cfg.extract.model_copy(update={"aggregate": "largest"})})
    with pytest.raises(BenchmarkError, match="differs between its lesions"):
        load_cohort(run_dir, cfg)


def test_evaluation_patients_only_when_designated(tmp_path):
    run_dir = tmp_path / "evalpat"
    cases = make_run(run_dir, n_patients=40, multi_fraction=0.0, seed=0)
    cases["is_evaluation"] = np.arange(len(cases)) < 30
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    cohort = load_cohort(run_dir, pipeline_config(run_dir, feature_sets=["learned"]))
    assert cohort.cohort == "evaluation_patients" and len(cohort.rows) == 30


def test_lesions_missing_from_a_table_are_excluded_everywhere_and_reported(tmp_path):
    run_dir = tmp_path / "missing"
    make_run(run_dir, n_patients=30, multi_fraction=0.0, seed=0)
    lat = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    lat.iloc[1:].to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    fails = []
    cohort = load_cohort(run_dir, pipeline_config(run_dir, feature_sets=["learned", "handcrafted"]), lambda c, m, f: fails.append(c))
    assert fails == [lat.case_id.iloc[0]]
    assert len(cohort.rows) == 29 and all(fs.X.shape[0] == 29 for fs in cohort.sets.values())


# ----------------------------------------------------------------------------- refusals
def _edit_cases(run_dir, fn):
    cases = pd.read_parquet(run_dir / "ingest" / "cases.parquet")
    fn(cases).to_parquet(run_dir / "ingest" / "cases.parquet", index=False)


@pytest.mark.parametrize(
    "edit, config, message",
    [
        (lambda c: c.assign(label=1), {}, "single class"),
        (lambda c: c.assign(label=np.where(np.arange(len(c)) % 2, 2, 0)), {}, "binary 0/1"),
        (lambda c: c.assign(label=np.where(np.arange(len(c)) % 2, "yes", "no")), {}, "not 0/1"),
        (lambda c: c.assign(os_event=(np.arange(len(c)) < 5).astype(int)),
         {"classification": None, "survival": {"time": "os_time", "event": "os_event"}}, "only 5 events"),
        (lambda c: c.assign(os_time=-1.0),
         {"classification": None, "survival": {"time": "os_time", "event": "os_event"}}, "negative value"),
        (lambda c: c, {"classification": {"label": "nope"}}, "column 'nope' not in"),
        (lambda c: c, {"classification": None}, "no task configured"),
        (lambda c: c, {"clinical": ["weight"], "feature_sets": ["clinical"]}, "not in ingest/cases.parquet"),
    ],
)
def test_dishonest_or_impossible_runs_are_refused(tmp_path, edit, config, message):
    run_dir = tmp_path / "refuse"
    make_run(run_dir, n_patients=24, multi_fraction=0.0, seed=0)
    _edit_cases(run_dir, edit)
    cfg = pipeline_config(run_dir, **{"feature_sets": ["volume"], **config})
    with pytest.raises(BenchmarkError, match=message):
        _run(run_dir, cfg)


def test_feature_table_keys_must_match_cases(tmp_path):
    run_dir = tmp_path / "keys"
    make_run(run_dir, n_patients=24, multi_fraction=0.0, seed=0)
    cfg = pipeline_config(run_dir, feature_sets=["learned"])
    lat = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    bad = lat.copy()
    bad.loc[0, "case_id"] = "ZZZ_L0"
    bad.to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    with pytest.raises(BenchmarkError, match="not in ingest/cases.parquet"):
        _run(run_dir, cfg)
    bad = lat.copy()
    bad.loc[0, "patient_id"] = "P999"
    bad.to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    with pytest.raises(BenchmarkError, match="patient_id 'P999'"):
        _run(run_dir, cfg)
    pd.concat([lat, lat.iloc[:1]]).to_parquet(run_dir / "extract" / "latent.parquet", index=False)
    with pytest.raises(BenchmarkError, match="appears 2 times"):
        _run(run_dir, cfg)
    (run_dir / "extract" / "latent.parquet").unlink()
    with pytest.raises(BenchmarkError, match="enable extract.latent"):
        _run(run_dir, cfg)


def test_too_few_patients_in_a_class_for_the_folds(tmp_path):
    run_dir = tmp_path / "fewpos"
    make_run(run_dir, n_patients=24, multi_fraction=0.0, seed=0)
    _edit_cases(run_dir, lambda c: c.assign(label=(np.arange(len(c)) < 2).astype(int)))
    with pytest.raises(BenchmarkError, match="fewer than cv.folds=3"):
        _run(run_dir, pipeline_config(run_dir, feature_sets=["volume"]))


# ----------------------------------------------------------------------------- robustness through the real path
def _write_lesion_images(run_dir, cases, rng, lopsided=False):
    """Tiny CT-like scans (20^3, 1.5 mm) with an ellipsoid lesion whose contrast follows the label.

    ``lopsided``: a lobe on one side, so erosion/dilation move the centroid (as for real lesions; a symmetric
    ellipsoid erodes about its own centre)."""
    img_dir = run_dir / "images"
    img_dir.mkdir()
    zz, yy, xx = np.mgrid[:20, :20, :20]
    paths_i, paths_m = [], []
    for i, row in cases.iterrows():
        r = 4 + (i % 3)
        mask = (((zz - 10) / r) ** 2 + ((yy - 10) / (r + 1)) ** 2 + ((xx - 9) / r) ** 2 <= 1).astype(np.uint8)
        if lopsided:
            mask[((zz - 10) ** 2 + (yy - 10) ** 2 <= 4) & (xx >= 9) & (xx <= 9 + r + 3)] = 1
        img = rng.normal(0, 20, size=mask.shape) + 40 + mask * (60 + 30 * row["label"])
        for arr, name, out in ((img.astype(np.float32), "img", paths_i), (mask, "msk", paths_m)):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.5, 1.5, 1.5))
            p = img_dir / f"{row.case_id}_{name}.nii.gz"
            sitk.WriteImage(im, str(p))
            out.append(str(p))
    return cases.assign(image=paths_i, mask=paths_m, mask_label=None, series_uid=None, image_sha256="x", mask_sha256="y")


def _simple_extractor(meta: dict) -> dict:
    """Stand-in for the feature extractors: a few first-order/shape numbers from the files preprocess wrote."""
    with np.load(meta["roi_path"]) as z:
        img, msk = z["image"], z["mask"] > 0
    raw = sitk.GetArrayFromImage(sitk.ReadImage(meta["radiomics_image"]))
    rmask = sitk.GetArrayFromImage(sitk.ReadImage(meta["radiomics_mask"])) > 0
    return {
        "learned": {"latent_000": float(img[msk].mean()), "latent_001": float(img[~msk].std())},
        "handcrafted": {"original_shape_VoxelVolume": float(rmask.sum()), "original_firstorder_Mean": float(raw[rmask].mean()),
                        "original_firstorder_Maximum": float(raw[rmask].max())},
    }


def test_robustness_perturbs_through_the_shared_path(tmp_path):
    run_dir = tmp_path / "robust"
    rng = np.random.default_rng(0)
    cases = make_run(run_dir, n_patients=18, multi_fraction=0.0, seed=2)
    cases = _write_lesion_images(run_dir, cases, rng, lopsided=True)
    cases.to_parquet(run_dir / "ingest" / "cases.parquet", index=False)
    cfg = PipelineConfig.model_validate({
        "name": "robust", "runs_dir": str(tmp_path), "data": {"synth": {"cases": 8}},
        "preprocess": {"spacing_mm": [1.0, 1.0, 1.0], "roi_size_vox": [16, 16, 16], "patches": {"per_volume": 0}, "radiomics_margin_vox": 2},
        "benchmark": {"classification": {"label": "label"}, "feature_sets": ["learned", "handcrafted"], "bootstrap": 0,
                      "shuffled_control": False, "cv": {"folds": 3, "repeats": 1, "inner_folds": 2},
                      "robustness": {"enabled": True, "max_lesions": 8, "robust_only": True, "threshold": 0.75}},
    })
    s, fails = _run(run_dir, cfg, extractor=_simple_extractor)
    assert fails == []
    rob = pd.read_parquet(run_dir / "benchmark" / "robustness.parquet")
    assert set(rob.feature_set) == {"learned", "handcrafted"}
    assert (rob.n_lesions == 8).all() and (rob.n_conditions == 7).all()  # original + 6 perturbations
    icc = rob.set_index("feature")["icc"]
    assert icc["original_shape_VoxelVolume"] > 0.75  # sizes differ a lot between lesions, little under perturbation
    assert icc["original_firstorder_Mean"] > 0.75
    values = pd.read_parquet(run_dir / "benchmark" / "robustness_values.parquet")
    vol = values[values.feature == "original_shape_VoxelVolume"].pivot(index="case_id", columns="condition", values="value")
    assert (vol["erode"] < vol["original"]).all() and (vol["dilate"] > vol["original"]).all()
    assert s["robustness"]["status"] == "done" and s["robustness"]["n_lesions"] == 8
    assert 0 <= s["robustness"]["sets"]["handcrafted"]["fraction_icc_ge_0_75"] <= 1
    # robust_only: per fold, only features robust on that fold's training lesions were offered to the model
    cvr = pd.read_parquet(run_dir / "benchmark" / "cv_results.parquet")
    assert (cvr[cvr.fold >= 0].n_features <= 3).all()
    # every perturbation acts on what each set sees: with the exact-centroid crop an eroded/dilated mask moves the
    # encoder's ROI (no longer bit-identical by construction); per perturbation, the count of changed inputs is kept
    ch = pd.read_parquet(run_dir / "benchmark" / "robustness_inputs.parquet").set_index(["condition", "feature_set"])
    assert (ch["n_lesions"] == 8).all()
    assert ch.loc[("noise", "learned"), "n_changed"] == 8 and ch.loc[("erode", "handcrafted"), "n_changed"] == 8
    assert ch.loc[("erode", "learned"), "n_changed"] >= 6 and ch.loc[("dilate", "learned"), "n_changed"] >= 6
    assert s["robustness"]["inputs_changed"]["erode/learned"]["n_changed"] == ch.loc[("erode", "learned"), "n_changed"]
    assert {"icc_ci_low", "icc_ci_high"} <= set(rob.columns)
    ok = rob.dropna(subset=["icc", "icc_ci_low"])
    assert ((ok.icc_ci_low <= ok.icc) & (ok.icc <= ok.icc_ci_high)).all()
    fam = pd.read_parquet(run_dir / "benchmark" / "robustness_families.parquet")
    assert {("handcrafted", "shape"), ("handcrafted", "firstorder"), ("learned", "latent"), ("learned", "all")} <= set(zip(fam.feature_set, fam.family))
    assert s["robustness"]["families"]["handcrafted/all"]["n_features"] == 3


def test_voxel_crop_centre_leaves_the_encoder_input_of_a_mask_edit_unchanged(tmp_path):
    """The old behaviour, kept behind preprocess.crop_centre: voxel - the ROI ignores sub-voxel centroid moves."""
    from radae.preprocess.lesion import preprocess_lesion
    from radae.preprocess.store import load_roi

    run_dir = tmp_path / "crop"
    rng = np.random.default_rng(0)
    cases = _write_lesion_images(run_dir, make_run(run_dir, n_patients=6, multi_fraction=0.0, seed=2), rng, lopsided=True)
    row = cases.iloc[0].to_dict()
    img = sitk.ReadImage(row["mask"])
    arr = sitk.GetArrayFromImage(img)
    from radae.evaluate.perturbations import erode

    eroded = sitk.GetImageFromArray(erode(arr))
    eroded.CopyInformation(img)
    sitk.WriteImage(eroded, str(tmp_path / "eroded.nii"))
    out = {}
    for centre in ("voxel", "exact"):
        cfg = PipelineConfig.model_validate({"name": "c", "data": {"synth": {"cases": 8}}, "preprocess": {
            "spacing_mm": [1.0, 1.0, 1.0], "roi_size_vox": [16, 16, 16], "patches": {"per_volume": 0}, "crop_centre": centre}})
        a = load_roi(preprocess_lesion(row, cfg.preprocess, tmp_path / centre / "a", 0)["roi_path"]).image
        b = load_roi(preprocess_lesion({**row, "mask": str(tmp_path / "eroded.nii"), "mask_sha256": "e"}, cfg.preprocess,
                                       tmp_path / centre / "b", 0)["roi_path"]).image
        out[centre] = np.array_equal(a, b)
    assert out == {"voxel": True, "exact": False}


@pytest.mark.slow
def test_permutation_test_of_the_primary_sets(tmp_path):
    """benchmark.permutations re-runs the whole nested CV on permuted outcomes; planted signal -> the smallest p."""
    run_dir = tmp_path / "perm"
    make_run(run_dir, n_patients=40, multi_fraction=0.3, seed=4)
    cfg = pipeline_config(run_dir, feature_sets=["learned", "volume"], primary=["learned", "volume"], permutations=4,
                          shuffled_control=False, bootstrap=0)
    s, _ = _run(run_dir, cfg)
    perm = s["classification"]["primary"]["permutation"]
    assert perm["status"] == "done" and perm["n_permutations"] == 4
    assert perm["sets"]["learned"]["p_value"] == pytest.approx(1 / 5)  # the planted signal beats every permutation
    assert abs(perm["sets"]["learned"]["null_mean"] - 0.5) < 0.2
    assert perm["difference"]["set_a"] == "learned" and perm["difference"]["set_b"] == "volume"
    assert s["cv"]["permutations"] == 4 and s["cv"]["primary"] == ["learned", "volume"]
