"""Synthetic cohort: byte-identical for a seed, and its ground truth agrees with the images and masks it wrote."""
import numpy as np
import pytest
import pandas as pd
import SimpleITK as sitk

from radae.data.synth import generate_cohort


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_cohort(tmp_path):
    kw = dict(cases=6, size_vox=24, multi_lesion_fraction=0.5, unlabeled=2)
    generate_cohort(tmp_path / "a", seed=7, **kw)
    generate_cohort(tmp_path / "b", seed=7, **kw)
    generate_cohort(tmp_path / "c", seed=8, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 2 * 8 + 4 and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    assert a["images/SYN0000.nii.gz"] != c["images/SYN0000.nii.gz"] and a["truth.csv"] != c["truth.csv"]


def test_ground_truth_matches_masks_images_and_outcomes(tmp_path):
    out = tmp_path / "syn"
    manifest = generate_cohort(out, cases=12, seed=0, size_vox=32, multi_lesion_fraction=0.4, unlabeled=3)
    truth = pd.read_csv(out / "truth.csv").set_index("case_id")
    assert manifest.equals(pd.read_csv(out / "manifest.csv").astype(manifest.dtypes.to_dict()))
    assert set(truth.index) == set(manifest["case_id"]) and manifest["case_id"].is_unique
    assert (manifest.groupby("patient_id").size() == 2).any()  # some patients have two lesions
    mean_hu = {0: [], 1: []}
    for row in manifest.itertuples():
        img = sitk.ReadImage(str(out / row.image))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / row.mask)))
        t = truth.loc[row.case_id]
        lesion = mask == row.mask_label
        assert int(lesion.sum()) == t["lesion_voxels"] > 0
        np.testing.assert_allclose(img.GetSpacing(), (t["spacing_x"], t["spacing_y"], t["spacing_z"]), rtol=1e-6)
        voxels = sitk.GetArrayFromImage(img)[lesion]
        assert abs(voxels.mean() - t["mean_hu"]) < 3 * t["texture_hu"]  # the lesion really has its drawn attenuation
        if t["labeled"]:
            assert row.label == t["label"] and row.os_time > 0 and row.os_event in (0, 1)
            mean_hu[int(t["label"])].append(voxels.mean())
        else:
            assert pd.isna(row.label) and pd.isna(row.os_time)
    # the hidden class is visible in the images (brighter lesions for class 1 on average), one part of the planted mix
    assert np.mean(mean_hu[1]) > np.mean(mean_hu[0])
    # the oracle (Bayes-optimal on the hidden properties) is written and recomputable from truth.csv
    import json

    from radae.data.synth import oracle_auc

    oracle = json.loads((out / "oracle.json").read_text())
    assert oracle["oracle_auc"] == pytest.approx(oracle_auc(truth.reset_index()))
    assert set(oracle["class_effects"]) == {"lobulation", "texture_hu", "texture_scale_vox", "mean_hu", "rim_hu"}
    evaluation = (out / "evaluation_patients.txt").read_text().split()
    assert evaluation == [f"SYN{i:04d}" for i in range(12)]
    # lesions of one patient share the patient's outcome
    labeled = manifest.dropna(subset=["label"])
    assert (labeled.groupby("patient_id")[["label", "os_time", "os_event"]].nunique() == 1).all().all()


def test_sites_plant_a_scanner_effect_and_leave_everything_else_unchanged(tmp_path):
    kw = dict(cases=8, seed=2, size_vox=24, multi_lesion_fraction=0.0, unlabeled=2)
    one = generate_cohort(tmp_path / "one", **kw)
    two = generate_cohort(tmp_path / "two", sites=2, **kw)
    assert "site" not in one.columns and "cohort" not in one.columns  # default: the cohort it always was
    assert two.drop(columns=["site", "cohort"]).equals(one)
    assert (tmp_path / "one" / "truth.csv").read_bytes() == (tmp_path / "two" / "truth.csv").read_bytes()
    labeled = two[two["label"].notna()]
    assert sorted(labeled["cohort"].value_counts().tolist()) == [4, 4] and two.loc[two["label"].isna(), "cohort"].isna().all()
    for row in two.itertuples():
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "one" / row.image)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / row.image)))
        if row.site == "site_1":
            assert np.array_equal(a, b)
        else:  # scale 1.15, shift +25 HU, extra noise
            assert abs(b.mean() - (1.15 * a.mean() + 25.0)) < 1.0 and (b - 1.15 * a - 25.0).std() > 5.0
