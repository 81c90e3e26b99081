"""IBSI 1 compliance: the digital phantom through radae's wrapper, the naming map, and the shipped table."""
from __future__ import annotations

import pandas as pd
import pytest

from radae.features import ibsi
from radae.features.handcrafted import pyradiomics_version


def test_naming_map_is_one_to_one_and_known_to_pyradiomics():
    from radiomics import getFeatureClasses

    tags = list(ibsi.PYRADIOMICS_TO_IBSI.values())
    assert len(tags) == len(set(tags))
    for feat in ibsi.PYRADIOMICS_TO_IBSI:
        cls, name = feat.split("_", 1)
        assert getFeatureClasses()[cls].getFeatureNames().get(name) is False, feat  # exists, not deprecated
    m = ibsi.naming_map()
    assert {"glcm_Contrast", "cm_contrast"} <= set(m.loc[m["pyradiomics_feature"] == "glcm_Contrast"].iloc[0])
    assert ibsi._tag_for("glcm_Contrast", "3D") == "cm_contrast_3D_avg"
    assert ibsi._tag_for("glszm_ZoneEntropy", "2.5D") == "szm_zs_entr_2_5D"
    assert ibsi._tag_for("shape_MeshVolume", "2.5D") == "morph_volume"


def test_effective_tolerance():
    assert ibsi.effective_tolerance(556.0, 4.0) == 4.0
    assert ibsi.effective_tolerance(0.0411, 0.0) == pytest.approx(0.00005)
    assert ibsi.effective_tolerance(-0.355, 0.0) == pytest.approx(0.0005)


@pytest.mark.data
def test_digital_phantom_matches_ibsi_except_known_definitions(data_root):
    rows = ibsi.compare_dataset("phantom", data_root)
    by = rows.set_index("ibsi_tag")
    matched = rows[rows["status"] == "match"]
    assert len(matched) >= 170
    # both PyRadiomics aggregations are compared: 3D (averaged) and force2D (= IBSI 2.5D, direction-merged)
    assert {"cm_contrast_3D_avg", "cm_contrast_2_5D_avg", "szm_sze_3D", "szm_sze_2_5D", "ngl_lde_3D", "ngt_busyness_2_5D",
            "morph_volume", "stat_mean", "ih_entropy"} <= set(matched["ibsi_tag"])
    mism = rows[rows["status"] == "mismatch"]
    assert set(mism["ibsi_tag"]) == {"stat_kurt", "morph_pca_min_axis", "morph_pca_least_axis"}
    assert mism["reason"].str.endswith("matches").all()  # each explained by a definition difference, checked numerically
    assert by.loc["stat_kurt", "value"] - 3 == pytest.approx(by.loc["stat_kurt", "reference"], abs=5e-4)
    assert (rows.loc[rows["status"] == "not_in_pyradiomics", "reason"] != "").all()
    assert rows["pyradiomics_version"].eq(pyradiomics_version()).all()


@pytest.mark.data
def test_configuration_a_matches_ibsi_except_kurtosis(data_root):
    rows = ibsi.compare_dataset("A", data_root)
    assert (rows["status"] == "match").sum() >= 100
    assert rows.loc[rows["status"] == "mismatch", "ibsi_tag"].tolist() == ["stat_kurt"]


@pytest.mark.data
def test_shipped_table_is_current(data_root):
    """radae/params/ibsi_compliance.csv is what `radae ibsi` writes with this PyRadiomics."""
    shipped = pd.read_csv(ibsi.shipped_table_path(), keep_default_na=False, na_values=[""])
    assert list(shipped.columns) == ibsi.COLUMNS
    assert set(shipped["dataset"]) == {d.name for d in ibsi.DATASETS.values()}
    fresh = ibsi.compliance_table(data_root, ("phantom", "A"))
    old = shipped[shipped["dataset"].isin(["digital phantom", "configuration A"])].reset_index(drop=True)
    fresh = pd.read_csv(pd.io.common.StringIO(fresh.to_csv(index=False)), keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(old, fresh)
    statuses = shipped.groupby("dataset")["status"].value_counts().unstack(fill_value=0)
    assert statuses.loc["configuration E", "not_configurable"] > 0
