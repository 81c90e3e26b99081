"""Baselines: volume, voxel PCA fitted in the fold, clinical encoding."""
import numpy as np
import pandas as pd
import pytest

from radae.util.errors import BenchmarkError
from radae.evaluate.baselines import VoxelPCA, block_average, clinical_features, volume_features, voxel_features
from radae.preprocess.store import save_roi


def test_voxel_pca_learns_only_from_fit_rows_and_caps_components():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 50))
    p = VoxelPCA(n_components=30).fit(X[:8])
    assert p.pca_.n_components_ == 7  # at most n_train - 1
    assert p.transform(X[8:]).shape == (4, 7)
    np.testing.assert_allclose(p.pca_.mean_, X[:8].mean(axis=0))
    q = VoxelPCA(n_components=30).fit(X[4:])
    assert not np.allclose(q.pca_.mean_, p.pca_.mean_)


def test_block_average_preserves_mean_and_shape():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 32)).astype(np.float32)
    b = block_average(a, 8)
    assert b.shape == (8, 8, 8)
    assert b.mean() == pytest.approx(a.mean(), abs=0.01)
    assert b.std() < a.std()


def test_voxel_features_read_rois(tmp_path):
    rows = []
    for i in range(3):
        p = tmp_path / f"r{i}.npz"
        save_roi(p, np.full((8, 8, 8), float(i), np.float32), np.ones((8, 8, 8), np.uint8), (1, 1, 1), (0, 0, 0))
        rows.append({"case_id": f"c{i}", "roi_path": p.name})  # relative to the run folder
    f = voxel_features(pd.DataFrame(rows), tmp_path, grid_vox=4)
    assert f.shape == (3, 1 + 2 * 64)
    np.testing.assert_allclose(f.iloc[:, 1:65].mean(axis=1), [0, 1, 2], atol=1e-6)
    np.testing.assert_allclose(f.iloc[:, 65:], 1.0)
    with pytest.raises(BenchmarkError, match="cannot read the ROI"):
        voxel_features(pd.DataFrame([{"case_id": "x", "roi_path": "missing.npz"}]), tmp_path, 4)


def test_volume_and_clinical_encoding():
    rois = pd.DataFrame({"case_id": ["a", "b"], "lesion_volume_ml": [1.0, np.e]})
    np.testing.assert_allclose(volume_features(rois)["log_lesion_volume_ml"], [0.0, 1.0])
    with pytest.raises(BenchmarkError, match="expected > 0"):
        volume_features(rois.assign(lesion_volume_ml=[1.0, 0.0]))
    cases = pd.DataFrame({"case_id": ["a", "b", "c"], "Age": [50, None, 70], "Grade": ["High", "Low", None], "flag": [True, False, True]})
    f = clinical_features(cases, ["Age", "Grade", "flag"])
    assert list(f.columns) == ["case_id", "clinical_Age", "clinical_Grade=High", "clinical_Grade=Low", "clinical_flag"]
    np.testing.assert_allclose(f["clinical_Grade=High"], [1, 0, np.nan])
    np.testing.assert_allclose(f["clinical_flag"], [1, 0, 1])
    with pytest.raises(BenchmarkError, match="not in ingest/cases.parquet"):
        clinical_features(cases, ["Weight"])


def test_clinical_with_limits_the_clinical_combinations():
    import pandas as pd

    from radae.config import BenchmarkConfig
    from radae.evaluate.cohort import _build_sets

    frames = {n: pd.DataFrame({f"{n}_a": [1.0, 2.0, 3.0]}) for n in ("learned", "handcrafted", "volume", "clinical")}
    every = BenchmarkConfig(clinical=("age",), feature_sets=("learned", "handcrafted", "volume", "clinical"))
    assert sorted(_build_sets(frames, every)) == ["clinical", "clinical+handcrafted", "clinical+learned", "clinical+volume",
                                                   "handcrafted", "learned", "volume"]
    some = every.model_copy(update={"clinical_with": ("learned",)})
    sets = _build_sets(frames, some)
    assert sorted(sets) == ["clinical", "clinical+learned", "handcrafted", "learned", "volume"]
    assert sets["clinical+learned"].columns == ["clinical_a", "learned_a"] and list(sets["clinical+learned"].forced) == [True, False]
