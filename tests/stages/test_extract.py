"""The extract stage on tiny run folders: tables, provenance, dictionary, failures, resume, aggregation, determinism."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radae.util.errors import ExtractError
from radae.features.table import read_provenance
from radae.features.provenance import LESION_PROVENANCE_COLUMNS
from radae.runner import run_pipeline

from tests.features.conftest import make_run, pipeline


def _run(cfg, **kw):
    return run_pipeline(cfg, quiet=True, **kw)


def test_stage_writes_tables_dictionary_provenance(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    _run(pipeline(runs))
    out = run_dir / "extract"
    for name in ("latent.parquet", "latent.csv", "radiomics.parquet", "radiomics.csv", "data_dictionary.csv",
                 "provenance.json", "summary.json", "failures.csv", "ibsi_compliance.csv"):
        assert (out / name).is_file(), name
    lat = pd.read_parquet(out / "latent.parquet")
    rad = pd.read_parquet(out / "radiomics.parquet")
    for t in (lat, rad):
        assert list(t.columns[:2]) == ["case_id", "patient_id"]
        assert t["case_id"].tolist() == sorted(cases["case_id"])
        assert not t.iloc[:, 2:].isna().any().any()
    assert [c for c in lat.columns[2:] if c.startswith("latent_")] == [f"latent_{i:03d}" for i in range(6)]
    assert {c.split("_")[0] for c in lat.columns[2:]} == {"latent", "pooled", "anomaly", "random"}  # the default heads
    assert all(c.startswith("original_") for c in rad.columns[2:]) and "original_glcm_Contrast" in rad.columns
    assert not any("diagnostics" in c for c in rad.columns)
    pd.testing.assert_frame_equal(pd.read_csv(out / "latent.csv", dtype={"patient_id": str}), lat, check_exact=False, rtol=1e-15)
    dic = pd.read_csv(out / "data_dictionary.csv")
    assert dic["feature"].tolist() == list(lat.columns[2:]) + list(rad.columns[2:])
    assert set(dic["family"]) == {"latent", "shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm",
                                  "learned_pooled", "anomaly", "random_encoder", "random_pooled"}
    prov = read_provenance(out / "radiomics.parquet")
    assert prov["grid"] == "resampled" and prov["versions"]["pyradiomics"] == "3.0.1"
    assert "lesions" not in prov and prov["lesion_provenance"] == "lesion_provenance.parquet"  # per lesion: a table
    lp = pd.read_parquet(out / "lesion_provenance.parquet")
    assert list(lp.columns) == list(LESION_PROVENANCE_COLUMNS)
    assert lp["table"].tolist() == ["latent"] * 5 + ["radiomics"] * 5
    assert lp.groupby("table")["case_id"].apply(list).tolist() == [sorted(cases["case_id"])] * 2
    lesion = lp.set_index(["table", "case_id"]).loc[("radiomics", cases["case_id"][0])]
    assert lesion["source_image_sha256"] == "img0" and len(lesion["input_mask_sha256"]) == 64
    assert json.loads(lesion["diagnostics"])["Mask-original_VoxelNum"] > 0
    assert (lp["preprocess_key"].str.len() > 0).all() and (lp.loc[lp["table"] == "latent", "diagnostics"] == "").all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "lesion_provenance.csv", dtype=str, keep_default_na=False), lp)
    assert prov["parameters"]["CT"]["file"] == "ct.yaml"
    lprov = read_provenance(out / "latent.parquet")
    from radae.util.hashing import file_sha256

    assert lprov["checkpoint_sha256"] == file_sha256(run_dir / "pretrain" / "model.pt")
    side = json.loads((out / "provenance.json").read_text())
    assert side["created_utc"] and side["checkpoint_sha256"] == lprov["checkpoint_sha256"]
    assert side["radiomics"]["grid"] == "resampled" and side["radiomics"]["image_types"] == "Original"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["radiomics"]["extracted"] == 5 and summary["latent"]["lesions_per_s"] > 0


def test_corrupted_mask_gives_failure_row_and_complete_table(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    bad = rois.iloc[2]
    Path(bad["radiomics_mask"]).write_bytes(b"garbage, not an image")
    _run(pipeline(runs, extract={"n_jobs": 2}))
    out = run_dir / "extract"
    rad = pd.read_parquet(out / "radiomics.parquet")
    assert rad["case_id"].tolist() == sorted(set(cases["case_id"]) - {bad["case_id"]})
    assert not rad.iloc[:, 2:].isna().any().any()
    fails = pd.read_csv(out / "failures.csv")
    assert fails["case_id"].tolist() == [bad["case_id"]]
    assert fails["stage"].tolist() == ["extract"] and fails["file"].tolist() == [bad["radiomics_mask"]]
    assert "cannot read mask" in fails["message"].iloc[0]
    assert pd.read_csv(run_dir / "failures.csv")["case_id"].tolist() == [bad["case_id"]]
    assert len(pd.read_parquet(out / "latent.parquet")) == len(cases)  # the ROI itself is fine
    with pytest.raises(ExtractError, match="cannot read mask"):
        _run(pipeline(runs).model_copy(update={"on_error": "raise"}), force=True)


def test_resume_reuses_finished_lesions(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    cfg = pipeline(runs)
    _run(cfg)
    out = run_dir / "extract"
    first = pd.read_parquet(out / "radiomics.parquet")
    partials = sorted((out / "partial" / "radiomics").glob("*.json"))
    assert len(partials) == len(cases)
    # a crash after three lesions: two partial results missing, no table, stage not done
    for p in partials[:2]:
        p.unlink()
    (out / "radiomics.parquet").unlink()
    (out / "_stage.json").write_text(json.dumps({"status": "running"}))
    _run(cfg, resume=True)
    summary = json.loads((out / "summary.json").read_text())["radiomics"]
    assert (summary["reused"], summary["extracted"]) == (3, 2)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "radiomics.parquet"), first)
    # other settings: nothing is reused
    _run(pipeline(runs, extract={"radiomics": {"image_types": ["Original"], "params": str(_params_copy(run_dir, 10))}}))
    assert json.loads((out / "summary.json").read_text())["radiomics"]["reused"] == 0


def test_tables_streamed_in_small_chunks_equal_tables_written_at_once(tmp_path, monkeypatch):
    """Chunks of 2 lesions and row groups of 2 rows give the same tables (and the same CSV bytes) as the defaults."""
    import pyarrow.parquet as pq

    from radae.features import run as extract_run
    from radae.features import table as tbl

    runs = tmp_path / "runs"
    make_run(runs / "t", patients=["A", "A", "B", "C", "C", "C", "D"])
    cfg = pipeline(runs, extract={"aggregate": "volume_weighted_mean", "latent": {"batch_size": 3}})
    out = runs / "t" / "extract"
    names = ("latent", "radiomics", "latent_patient", "radiomics_patient", "lesion_provenance")
    _run(cfg)
    whole = {n: (pd.read_parquet(out / f"{n}.parquet"), (out / f"{n}.csv").read_bytes()) for n in names}
    monkeypatch.setattr(extract_run, "CHUNK_ROWS", 2)
    monkeypatch.setattr(tbl, "ROW_GROUP_ROWS", (2, 2))
    _run(cfg, force=True)
    for n in names:
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{n}.parquet"), whole[n][0])
        assert (out / f"{n}.csv").read_bytes() == whole[n][1], n
    assert pq.ParquetFile(out / "radiomics.parquet").metadata.num_row_groups == 4  # 7 lesions, 2 a group
    assert whole["latent_patient"][0]["n_lesions"].tolist() == [2, 1, 3, 1]


def _params_copy(run_dir: Path, bin_width: float) -> Path:
    from radae.features.handcrafted import shipped_params_path

    p = run_dir.parent / f"ct_bw{bin_width}.yaml"
    p.write_text(shipped_params_path("CT").read_text().replace("binWidth: 25 ", f"binWidth: {bin_width} "))
    return p


def test_two_runs_same_seed_byte_identical_latent_tables(tmp_path):
    outs = []
    for name in ("a", "b"):
        runs = tmp_path / name
        make_run(runs / "t")
        if name == "b":  # the same trained model in both runs (torch.save's bytes depend on the file name)
            shutil.copyfile(tmp_path / "a" / "t" / "pretrain" / "model.pt", runs / "t" / "pretrain" / "model.pt")
        _run(pipeline(runs, extract={"radiomics": {"enabled": False}}))
        outs.append(runs / "t" / "extract")
    for f in ("latent.parquet", "latent.csv"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    assert not (outs[0] / "radiomics.parquet").exists() and not (outs[0] / "ibsi_compliance.csv").exists()


def test_weights_hash_ignores_serialisation(tmp_path):
    from radae.features import latent as lat
    from radae.models import load_trained

    from tests.features.conftest import save_tiny_model

    save_tiny_model(tmp_path / "x.pt")
    save_tiny_model(tmp_path / "y.pt")
    save_tiny_model(tmp_path / "z.pt", seed=1)
    (mx, ax), (my, ay), (mz, az) = (load_trained(tmp_path / f) for f in ("x.pt", "y.pt", "z.pt"))
    assert lat.weights_sha256(mx, ax) == lat.weights_sha256(my, ay) != lat.weights_sha256(mz, az)


def test_patient_aggregation_tables(tmp_path):
    runs = tmp_path / "runs"
    cases, rois = make_run(runs / "t", patients=["A", "A", "B", "C", "C"])
    _run(pipeline(runs, extract={"aggregate": "volume_weighted_mean"}))
    out = runs / "t" / "extract"
    lesions = pd.read_parquet(out / "radiomics.parquet")
    pt = pd.read_parquet(out / "radiomics_patient.parquet")
    assert pt["patient_id"].tolist() == ["A", "B", "C"] and pt["n_lesions"].tolist() == [2, 1, 2]
    w = rois.set_index("case_id")["lesion_volume_ml"]
    a = lesions[lesions["patient_id"] == "A"].set_index("case_id")["original_firstorder_Mean"]
    assert pt.loc[0, "original_firstorder_Mean"] == pytest.approx((a * w[a.index]).sum() / w[a.index].sum())
    assert (out / "latent_patient.csv").is_file()
    _run(pipeline(runs, extract={"aggregate": "largest"}))
    pt = pd.read_parquet(out / "latent_patient.parquet")
    lat = pd.read_parquet(out / "latent.parquet").set_index("case_id")
    big_a = w[["A_L1", "A_L2"]].idxmax()
    assert pt.loc[0, "case_ids"] == big_a
    np.testing.assert_array_equal(pt.iloc[0, 3:].to_numpy(float), lat.loc[big_a].iloc[1:].to_numpy(float))
    _run(pipeline(runs, extract={"aggregate": "all"}))
    assert not (out / "latent_patient.parquet").exists()


def test_original_grid_uses_pyradiomics_resampling(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    _run(pipeline(runs, extract={"latent": {"enabled": False}, "radiomics": {"grid": "original"}}))
    out = run_dir / "extract"
    rad = pd.read_parquet(out / "radiomics.parquet").set_index("case_id")
    prov = read_provenance(out / "radiomics.parquet")
    assert prov["grid"] == "original"
    assert prov["parameters"]["CT"]["params"]["setting"]["resampledPixelSpacing"] == [1.5, 1.5, 1.5]
    case = cases["case_id"][0]
    lesion = pd.read_parquet(out / "lesion_provenance.parquet").set_index(["table", "case_id"]).loc[("radiomics", case)]
    diag = json.loads(lesion["diagnostics"])
    assert diag["Image-original_Spacing"] == [1.5, 1.5, 3.0] and diag["Image-interpolated_Spacing"] == [1.5, 1.5, 1.5]
    assert lesion["input_image_sha256"] == "img0"  # ingest's hash of the original file
    # the object is the same size on both grids (within the z resolution of the original scan)
    rad_resampled = pd.DataFrame({"v": [float(np.load(r["roi_path"])["mask"].sum()) * 1.5**3 for _, r in rois.iterrows()]},
                                 index=rois["case_id"])
    ratio = rad["original_shape_VoxelVolume"] / rad_resampled["v"]
    assert ratio.between(0.7, 1.3).all(), ratio


def test_stage_with_dask_local_cluster_matches_process_pool(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    _run(pipeline(runs, extract={"n_jobs": 2, "latent": {"enabled": False}}))
    pooled = pd.read_parquet(run_dir / "extract" / "radiomics.parquet")
    shutil.rmtree(run_dir / "extract")
    _run(pipeline(runs, extract={"n_jobs": 2, "executor": "dask", "latent": {"enabled": False}}))
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "extract" / "radiomics.parquet"), pooled, check_exact=True)
    assert json.loads((run_dir / "extract" / "summary.json").read_text())["radiomics"]["executor"] == "dask"


def test_robustness_extractor_feeds_the_benchmark_perturbation_path(tiny_run, tmp_path):
    """The benchmark finds radae.features' extractor and runs a perturbed lesion through it."""
    from radae.evaluate import perturbations
    from radae.evaluate.robustness_run import find_extractors, perturbed_lesion_features

    runs, run_dir, cases, rois = tiny_run
    cfg = pipeline(runs)
    _run(cfg)
    extractor, reason = find_extractors(cfg, run_dir)
    assert extractor is not None, reason
    case = cases.iloc[0].to_dict()
    plain = perturbed_lesion_features(case, None, cfg, extractor, 0, tmp_path / "work")
    lat = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    rad = pd.read_parquet(run_dir / "extract" / "radiomics.parquet")
    assert list(plain["learned"]) == [c for c in lat.columns[2:] if c.startswith("latent_")]
    assert set(plain["handcrafted"]) == set(rad.columns[2:])
    pert = perturbations.draw_perturbation("noise", np.random.default_rng(3))
    noisy = perturbed_lesion_features(case, pert, cfg, extractor, 0, tmp_path / "work")
    assert noisy["handcrafted"]["original_firstorder_Mean"] != plain["handcrafted"]["original_firstorder_Mean"]
    assert noisy["learned"] != plain["learned"]
