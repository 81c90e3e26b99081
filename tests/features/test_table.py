"""Column order, atomic Parquet + CSV writing with provenance, patient aggregation, data dictionary."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radae.util.errors import ExtractError
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

    from radae.util.errors import RadaeError

    df = tbl.canonical(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "latent_000": [1.0]}))
    path, _ = tbl.write_table(df, tmp_path / "t.parquet")
    before = path.read_bytes()

    real = pq.ParquetWriter.write_table

    def crash(self, table, **kw):  # half a file, then the disk is full
        real(self, table, **kw)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)
    with pytest.raises(RadaeError, match="earlier outputs are unchanged"):
        tbl.write_table(df.assign(latent_000=2.0), tmp_path / "t.parquet")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]



def test_failed_last_flush_closes_both_handles_and_removes_temp_files(tmp_path, monkeypatch):
    """When the final _flush raises, __exit__ still closes the Parquet and CSV handles (no descriptor is left on a
    deleted temp file), removes both temp files, keeps the previous table and re-raises the flush's error."""
    import os

    df = tbl.canonical(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "latent_000": [1.0]}))
    path, csv_path = tbl.write_table(df, tmp_path / "t.parquet")
    before = (path.read_bytes(), csv_path.read_bytes())

    def boom(self, final=False):
        raise RuntimeError("flush failed")

    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    monkeypatch.setattr(tbl.TableWriter, "_flush", boom)
    w = tbl.TableWriter(path, tbl.column_kinds(df))
    with pytest.raises(RuntimeError, match="flush failed"):
        with w:
            w.write(df.assign(latent_000=2.0))
    assert not w._pq.is_open and w._csv.closed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]  # temp files gone
    assert (path.read_bytes(), csv_path.read_bytes()) == before
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds

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


def _lesions(n: int, n_feat: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((n, n_feat)), columns=[f"latent_{i:03d}" for i in range(n_feat)])
    df.iloc[::7, 1] = np.nan
    df.insert(0, "patient_id", [f"P{i // 3:05d}" for i in range(n)])  # three lesions per patient
    df.insert(0, "case_id", [f"C{i:06d}" for i in range(n)])
    return df


def test_streamed_table_equals_table_written_whole(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(tbl, "ROW_GROUP_BYTES", (2 * tbl.TEXT_BYTES + 8 * 3) * 1024)  # 1,024 rows a row group
    df = tbl.canonical(_lesions(2500))
    whole_pq, whole_csv = tbl.write_table(df, tmp_path / "whole.parquet", {"k": 1})
    with tbl.TableWriter(tmp_path / "streamed.parquet", tbl.lesion_columns(df.columns[2:]), {"k": 1},
                         sort_keys=("patient_id", "case_id")) as w:
        for start in range(0, len(df), 97):  # uneven chunks: row groups are cut by the writer, not by the caller
            w.write(df.iloc[start:start + 97])
    assert w.rows == 2500
    streamed = pd.read_parquet(tmp_path / "streamed.parquet")
    pd.testing.assert_frame_equal(streamed, df)
    assert (tmp_path / "streamed.csv").read_bytes() == whole_csv.read_bytes()
    meta = pq.ParquetFile(tmp_path / "streamed.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1024, 1024, 452]
    assert tbl.read_provenance(tmp_path / "streamed.parquet") == {"k": 1}
    assert list(tbl.iter_table(tmp_path / "streamed.parquet", rows=1000))[-1]["case_id"].iloc[-1] == "C002499"


def test_streamed_table_conforms_columns_and_refuses_bad_order(tmp_path):
    cols = tbl.lesion_columns(["latent_001", "latent_000"])
    assert list(cols) == ["case_id", "patient_id", "latent_000", "latent_001"]
    with tbl.TableWriter(tmp_path / "t.parquet", cols, sort_keys=("patient_id", "case_id")) as w:
        w.write(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "latent_001": ["2.5"]}))  # a column missing
    got = pd.read_parquet(tmp_path / "t.parquet")
    assert list(got.columns) == list(cols) and np.isnan(got["latent_000"][0]) and got["latent_001"][0] == 2.5
    before = (tmp_path / "t.parquet").read_bytes()
    for rows, match in (([("b", "q"), ("a", "p")], "out of order"), ([("a", "p"), ("a", "p")], "appears twice")):
        with pytest.raises(ExtractError, match=match):
            with tbl.TableWriter(tmp_path / "t.parquet", cols, sort_keys=("patient_id", "case_id")) as w:
                for case, patient in rows:  # one row per chunk: the order is checked across chunks too
                    w.write(pd.DataFrame({"case_id": [case], "patient_id": [patient], "latent_000": [1.0]}))
        assert (tmp_path / "t.parquet").read_bytes() == before  # the failed table never replaced the good one
    with pytest.raises(ExtractError, match="not in the table"):
        with tbl.TableWriter(tmp_path / "t.parquet", cols) as w:
            w.write(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "latent_999": [1.0]}))
    with tbl.TableWriter(tmp_path / "empty.parquet", cols):
        pass
    empty = pd.read_parquet(tmp_path / "empty.parquet")
    assert list(empty.columns) == list(cols) and len(empty) == 0 and empty["latent_000"].dtype == np.float64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "empty.parquet", "t.csv", "t.parquet"]


@pytest.mark.parametrize("how", ["largest", "volume_weighted_mean"])
def test_patient_aggregation_in_chunks_equals_whole(how):
    df = tbl.canonical(_lesions(301))
    vol = pd.Series(np.random.default_rng(1).uniform(0.5, 9.0, len(df)), index=df["case_id"])
    whole = tbl.aggregate_patients(df, vol, how)
    for size in (1, 2, 3, 50, 1000):  # chunk edges inside and between patients
        chunks = (df.iloc[i:i + size] for i in range(0, len(df), size))
        got = pd.concat(list(tbl.aggregate_patient_chunks(chunks, vol, how)), ignore_index=True)
        pd.testing.assert_frame_equal(got, whole)


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
