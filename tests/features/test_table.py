"""Column order, atomic Parquet + CSV writing with provenance, patient aggregation, data dictionary."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radae.errors import ExtractError
from radae.features import dictionary as dct
from radae.features import table as tbl


def test_feature_order_is_fixed():
    cols = ["wavelet-LLH_glcm_Contrast", "log-sigma-10-0-mm-3D_firstorder_Mean", "original_glcm_Id", "patient_id",
            "log-sigma-2-0-mm-3D_firstorder_Mean", "original_shape_VoxelVolume", "original_firstorder_Mean", "case_id",
            "latent_010", "latent_002", "square_ngtdm_Busyness"]
    assert tbl.feature_order(cols) == [
        "latent_002", "latent_010", "original_shape_VoxelVolume", "original_firstorder_Mean", "original_glcm_Id",
        "log-sigma-2-0-mm-3D_firstorder_Mean", "log-sigma-10-0-mm-3D_firstorder_Mean", "wavelet-LLH_glcm_Contrast",
        "square_ngtdm_Busyness"]
    assert tbl.feature_order(cols) == tbl.feature_order(list(reversed(cols)))


def test_canonical_keys_first_rows_sorted():
    df = pd.DataFrame({"original_glcm_Id": [1, 2, 3], "case_id": ["b", "a", "c"], "patient_id": [2, 1, 1]})
    out = tbl.canonical(df)
    assert list(out.columns) == ["case_id", "patient_id", "original_glcm_Id"]
    assert list(out["case_id"]) == ["a", "c", "b"] and out["patient_id"].tolist() == ["1", "1", "2"]
    assert out["original_glcm_Id"].dtype == np.float64
    with pytest.raises(ExtractError, match="appears twice"):
        tbl.canonical(pd.concat([df, df]))


def test_write_table_atomic_twins_with_provenance(tmp_path):
    df = tbl.canonical(pd.DataFrame({"case_id": ["a", "b"], "patient_id": ["p", "q"], "latent_000": [0.1, np.nan]}))
    prov = {"checkpoint_sha256": "abc", "lesions": {"a": {"image_sha256": "x"}}, "value": float("nan")}
    pq_path, csv_path = tbl.write_table(df, tmp_path / "latent.parquet", prov)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latent.csv", "latent.parquet"]  # no temp files left
    back = pd.read_parquet(pq_path)
    pd.testing.assert_frame_equal(back, df)
    assert tbl.read_provenance(pq_path) == {"checkpoint_sha256": "abc", "lesions": {"a": {"image_sha256": "x"}}, "value": None}
    assert csv_path.read_text().splitlines()[0] == "case_id,patient_id,latent_000"
    first = (pq_path.read_bytes(), csv_path.read_bytes())
    tbl.write_table(df, tmp_path / "latent.parquet", prov)
    assert (pq_path.read_bytes(), csv_path.read_bytes()) == first  # same input, same bytes


def test_failed_write_leaves_previous_table(tmp_path, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    from radae.errors import RadaeError

    df = tbl.canonical(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "latent_000": [1.0]}))
    path, _ = tbl.write_table(df, tmp_path / "t.parquet")
    before = path.read_bytes()

    def crash(table, where, **kw):  # half a file, then the disk is full
        open(where, "wb").write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(RadaeError, match="earlier outputs are unchanged"):
        tbl.write_table(df.assign(latent_000=2.0), tmp_path / "t.parquet")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]


def test_aggregate_patients_largest_and_weighted_mean():
    df = tbl.canonical(pd.DataFrame({
        "case_id": ["a1", "a2", "b1"], "patient_id": ["A", "A", "B"],
        "latent_000": [1.0, 4.0, 7.0], "latent_001": [np.nan, 2.0, 3.0]}))
    vol = pd.Series({"a1": 3.0, "a2": 1.0, "b1": 5.0})
    largest = tbl.aggregate_patients(df, vol, "largest")
    assert largest["patient_id"].tolist() == ["A", "B"] and largest["case_ids"].tolist() == ["a1", "b1"]
    assert largest["latent_000"].tolist() == [1.0, 7.0] and np.isnan(largest["latent_001"].iloc[0])
    mean = tbl.aggregate_patients(df, vol, "volume_weighted_mean")
    assert mean["latent_000"].tolist() == [pytest.approx((3 * 1.0 + 1 * 4.0) / 4), 7.0]
    assert mean["latent_001"].tolist() == [2.0, 3.0]  # the NaN lesion is left out, weights renormalised
    assert mean["n_lesions"].tolist() == [2, 1] and mean["case_ids"].iloc[0] == "a1;a2"
    with pytest.raises(ExtractError, match="no lesion volume"):
        tbl.aggregate_patients(df, vol.drop("a2"), "largest")


def test_dictionary_covers_every_pyradiomics_feature():
    from radiomics import getFeatureClasses

    for cls, klass in getFeatureClasses().items():
        for name, deprecated in klass.getFeatureNames().items():
            if not deprecated:
                units, desc = dct.RADIOMICS_FEATURES[cls][name]
                assert units and desc.endswith("."), (cls, name)


def test_dictionary_rows():
    cols = ["case_id", "patient_id", "original_firstorder_Mean", "original_firstorder_Variance",
            "log-sigma-1-5-mm-3D_firstorder_Mean", "wavelet-HLL_glcm_Contrast", "original_shape_MeshVolume"]
    d = dct.data_dictionary(radiomics_columns=cols, unit=dct.intensity_unit({"CT": False}))
    assert list(d.columns) == dct.DICTIONARY_COLUMNS and len(d) == 5
    row = d.set_index("feature")
    assert row.loc["original_firstorder_Mean", "units"] == "HU"
    assert row.loc["original_firstorder_Variance", "units"] == "HU^2"
    assert row.loc["log-sigma-1-5-mm-3D_firstorder_Mean", "units"] == "HU (filtered)"
    assert row.loc["log-sigma-1-5-mm-3D_firstorder_Mean", "filter"] == "Laplacian of Gaussian, sigma 1.5 mm"
    assert row.loc["wavelet-HLL_glcm_Contrast", "filter"].endswith("high-pass x, low-pass y, low-pass z")
    assert row.loc["original_shape_MeshVolume", ["family", "units"]].tolist() == ["shape", "mm^3"]
    assert dct.intensity_unit({"CT": False, "MR": True}) == "HU / normalised units"
    lat = dct.data_dictionary(latent_columns=["case_id", "latent_000"], latent_meta={"kind": "vae", "in_channels": 2})
    assert lat.iloc[0]["family"] == "latent" and "mu" in lat.iloc[0]["description"]
