"""ICC against Shrout & Fleiss' worked example; perturbations are pure, seeded and do what they say."""
import numpy as np
import pandas as pd
import pytest

from radae.util.errors import BenchmarkError
from radae.evaluate import icc as I
from radae.evaluate import perturbations as P
from radae.evaluate import robustness as R

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges
SF_RATINGS = np.array(
    [
        [9, 2, 5, 8],
        [6, 1, 3, 2],
        [8, 4, 6, 8],
        [7, 1, 2, 6],
        [10, 5, 6, 9],
        [6, 2, 4, 7],
    ],
    dtype=float,
)


def test_icc_matches_hand_computed_anova_and_published_values():
    x = SF_RATINGS
    n, k = x.shape
    grand = sum(sum(r) for r in x.tolist()) / (n * k)
    row_means = [sum(r) / k for r in x.tolist()]
    col_means = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    ss_rows = k * sum((m - grand) ** 2 for m in row_means)
    ss_cols = n * sum((m - grand) ** 2 for m in col_means)
    ss_total = sum((v - grand) ** 2 for r in x.tolist() for v in r)
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    # the paper's mean squares
    assert (bms, jms, ems) == pytest.approx((11.24, 32.49, 1.02), abs=0.01)
    icc31 = (bms - ems) / (bms + (k - 1) * ems)
    icc21 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    assert I.icc(x, "icc3_1") == pytest.approx(icc31, abs=1e-12)
    assert I.icc(x, "icc2_1") == pytest.approx(icc21, abs=1e-12)
    # published: ICC(3,1) = .71, ICC(2,1) = .29
    assert round(I.icc(x, "icc3_1"), 2) == 0.71
    assert round(I.icc(x, "icc2_1"), 2) == 0.29


def test_icc_vectorised_over_features_and_edge_cases():
    rng = np.random.default_rng(0)
    stable = np.repeat(rng.normal(size=(20, 1)), 5, axis=1) + 1e-3 * rng.normal(size=(20, 5))
    noise = rng.normal(size=(20, 5))
    cube = np.stack([SF_RATINGS, SF_RATINGS], axis=2)
    np.testing.assert_allclose(I.icc(cube, "icc3_1"), [I.icc(SF_RATINGS)] * 2)
    assert I.icc(stable) > 0.99
    assert abs(I.icc(noise)) < 0.2
    assert np.isnan(I.icc(np.ones((5, 3))))  # no variation at all: undefined
    # a constant offset per rater: consistency ICC ignores it, absolute agreement does not
    shifted = np.column_stack([stable[:, 0], stable[:, 0] + 5.0])
    assert I.icc(shifted, "icc3_1") == pytest.approx(1.0)
    assert I.icc(shifted, "icc2_1") < 0.5


def test_icc_table_from_long_values_and_training_subset():
    rows = []
    for i in range(6):
        for j, cond in enumerate(["original", "noise", "rotate", "erode"]):
            rows.append({"case_id": f"c{i}", "condition": cond, "feature_set": "handcrafted", "feature": "f", "value": SF_RATINGS[i, j]})
            rows.append({"case_id": f"c{i}", "condition": cond, "feature_set": "learned", "feature": "latent_000", "value": float(i)})
    values = pd.DataFrame(rows)
    table = I.icc_table(values, "icc3_1")
    got = table.set_index("feature")
    assert got.loc["f", "icc"] == pytest.approx(I.icc(SF_RATINGS))
    assert got.loc["latent_000", "icc"] == pytest.approx(1.0)
    assert (got["n_lesions"] == 6).all() and (got["n_conditions"] == 4).all()
    sub = I.icc_table(values, "icc3_1", case_ids=["c0", "c1", "c2"]).set_index("feature")
    assert sub.loc["f", "icc"] == pytest.approx(I.icc(SF_RATINGS[:3]))
    # a NaN drops that lesion for that feature only
    values.loc[(values.case_id == "c5") & (values.feature == "f") & (values.condition == "noise"), "value"] = np.nan
    t2 = I.icc_table(values).set_index("feature")
    assert t2.loc["f", "n_lesions"] == 5 and t2.loc["latent_000", "n_lesions"] == 6
    assert t2.loc["f", "icc"] == pytest.approx(I.icc(SF_RATINGS[:5]))
    fr = I.robust_fractions(t2)
    assert fr["learned"]["fraction_icc_ge_0_75"] == 1.0
    assert fr["handcrafted"]["fraction_icc_ge_0_90"] == 0.0


# ----------------------------------------------------------------------------- perturbations
def _lesion(shape=(16, 20, 18)):
    rng = np.random.default_rng(0)
    zz, yy, xx = np.indices(shape)
    mask = (((zz - 8) / 5) ** 2 + ((yy - 10) / 6) ** 2 + ((xx - 9) / 4) ** 2 <= 1).astype(np.uint8)
    image = (100 + 50 * mask + rng.normal(0, 5, size=shape)).astype(np.float32)
    return image, mask


@pytest.mark.parametrize("kind", P.PERTURBATION_KINDS)
def test_perturbations_are_pure_and_reproducible(kind):
    image, mask = _lesion()
    img0, msk0 = image.copy(), mask.copy()
    p1 = P.draw_perturbation(kind, np.random.default_rng(1))
    p2 = P.draw_perturbation(kind, np.random.default_rng(1))
    assert p1 == p2
    a = P.apply_perturbation(p1, image, mask, (1.0, 1.0, 2.0), "MR")
    b = P.apply_perturbation(p2, image, mask, (1.0, 1.0, 2.0), "MR")
    np.testing.assert_array_equal(image, img0)
    np.testing.assert_array_equal(mask, msk0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].dtype == np.uint8 and a[1].any()
    if kind == "resample":
        assert a[0].shape != image.shape and a[2] != (1.0, 1.0, 2.0)
    else:
        assert a[0].shape == image.shape and a[2] == (1.0, 1.0, 2.0)
    assert not (np.array_equal(a[0], image) and np.array_equal(a[1], mask))  # it did something


def test_erode_dilate_count_voxels_of_a_cube():
    m = np.zeros((8, 8, 8), np.uint8)
    m[2:6, 2:6, 2:6] = 1  # 4^3 cube
    assert P.erode(m).sum() == 8  # 2^3 core
    single = np.zeros((5, 5, 5), np.uint8)
    single[2, 2, 2] = 1
    assert P.dilate(single).sum() == 7  # the voxel and its 6 face neighbours
    with pytest.raises(BenchmarkError, match="leaves no lesion voxel"):
        P.erode(single)


def test_rotation_and_translation_geometry():
    image, mask = _lesion((15, 15, 15))
    same_i, same_m = P.rotate(image, mask, 0.0, 0, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(same_i, image, atol=1e-4)
    np.testing.assert_array_equal(same_m, mask)
    shifted, smask = P.translate(image, mask, (1.0, 0.0, 0.0))
    np.testing.assert_allclose(shifted[5:-1], image[4:-2], atol=1e-4)
    np.testing.assert_array_equal(smask[1:], mask[:-1])


def test_rotation_about_z_maps_x_axis_to_y_axis():
    img = np.zeros((9, 9, 9), np.float32)
    img[4, 4, 4:8] = 1.0  # a bar from the centre along +x
    mask = np.zeros((9, 9, 9), np.uint8)
    mask[4, 4, 4] = 1  # centroid at the centre
    out, _ = P.rotate(img, mask, 90.0, 0, (1.0, 1.0, 1.0))
    bar = np.argwhere(out > 0.5)
    assert set(map(tuple, bar)) in ({(4, y, 4) for y in range(4, 8)}, {(4, y, 4) for y in range(1, 5)})


def test_resample_keeps_physical_extent():
    image, mask = _lesion((16, 20, 18))
    img2, m2, sp = P.resample_spacing(image, mask, (1.0, 1.0, 2.0), 2.0)
    assert img2.shape == (8, 10, 9)
    assert sp == pytest.approx((2.0, 2.0, 4.0))
    vol0 = mask.sum() * 1.0 * 1.0 * 2.0
    vol1 = m2.sum() * np.prod(sp)
    assert vol1 == pytest.approx(vol0, rel=0.35)


def test_noise_level_estimate_and_added_noise():
    rng = np.random.default_rng(0)
    smooth = np.tile(np.linspace(0, 100, 40, dtype=np.float32), (10, 40, 1))
    noisy = smooth + rng.normal(0, 3.0, size=smooth.shape).astype(np.float32)
    assert P.estimate_noise_sigma(noisy) == pytest.approx(3.0, rel=0.1)
    assert P.estimate_noise_sigma(smooth) < 0.1
    added = P.add_noise(smooth, 2.0, seed=1) - smooth
    assert added.std() == pytest.approx(2.0, rel=0.05)
    rician = P.add_noise(smooth + 50, 2.0, seed=1, rician=True)
    assert rician.min() >= 0
    p = P.Perturbation("noise", (("scale", 1.0), ("seed", 3.0)))
    out, _, _ = P.apply_perturbation(p, noisy, np.ones_like(noisy, np.uint8), (1, 1, 1), "CT")
    assert (out - noisy).std() == pytest.approx(3.0, rel=0.15)  # the image's own noise level


def test_perturbation_study_table_and_failures():
    image, mask = _lesion()
    tiny = np.zeros_like(mask)
    tiny[8, 10, 9] = 1  # erosion leaves nothing
    lesions = {"a": (image, mask), "b": (image * 1.1, mask), "c": (image, tiny)}

    def extract(cid, pert):
        img, msk = lesions[cid]
        if pert is not None:
            img, msk, _ = P.apply_perturbation(pert, img, msk, (1.0, 1.0, 1.0), "CT")
        return {"handcrafted": {"original_firstorder_Mean": float(img[msk > 0].mean()), "original_shape_VoxelVolume": float(msk.sum())}}

    failed = []
    values = R.perturbation_study(["a", "b", "c"], ["noise", "erode"], extract, seed=0, on_failure=lambda c, m, f: failed.append((c, m)))
    assert [c for c, _ in failed] == ["c"] and "erode" in failed[0][1]
    assert set(values.case_id) == {"a", "b"}
    assert set(values.condition) == {"original", "noise", "erode"}
    assert len(values) == 2 * 3 * 2
    again = R.perturbation_study(["a", "b"], ["noise", "erode"], extract, seed=0)
    pd.testing.assert_frame_equal(values.reset_index(drop=True), again)


@pytest.mark.parametrize("kind,pg_type", [("icc3_1", "ICC(C,1)"), ("icc2_1", "ICC(A,1)")])
def test_icc_confidence_interval_matches_pingouin(kind, pg_type):
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(3)
    for ratings in (SF_RATINGS, np.repeat(rng.normal(size=(15, 1)), 4, axis=1) + 0.5 * rng.normal(size=(15, 4))):
        n, k = ratings.shape
        long = pd.DataFrame({"s": np.repeat(np.arange(n), k), "r": np.tile(np.arange(k), n), "v": ratings.ravel()})
        ref = pg.intraclass_corr(long, targets="s", raters="r", ratings="v").set_index("Type").loc[pg_type]
        lo, hi = I.icc_ci(ratings, kind)
        assert I.icc(ratings, kind) == pytest.approx(ref["ICC"], abs=1e-10)
        # pingouin rounds its interval to 2 decimals
        assert lo == pytest.approx(ref["CI95"][0], abs=0.006) and hi == pytest.approx(ref["CI95"][1], abs=0.006)
        assert lo < I.icc(ratings, kind) < hi


def test_icc_ci_vectorised_and_table_columns():
    cube = np.stack([SF_RATINGS, SF_RATINGS * 2 + 1], axis=2)
    lo, hi = I.icc_ci(cube, "icc3_1")
    assert lo[0] == pytest.approx(lo[1]) and hi[0] == pytest.approx(hi[1])
    assert I.icc_ci(SF_RATINGS[:1], "icc3_1") != I.icc_ci(SF_RATINGS, "icc3_1")  # n < 2: NaN
    assert np.isnan(I.icc_ci(SF_RATINGS[:1], "icc3_1")[0])


def _study_values(n=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    truth = rng.normal(size=(n, 4))
    for i in range(n):
        for c, noise in (("original", 0.0), ("noise", 0.05), ("erode", 0.1)):
            feats = {"learned": {"latent_000": truth[i, 0] + noise * rng.normal(), "latent_001": rng.normal()},
                     "handcrafted": {"original_shape_VoxelVolume": truth[i, 2] + noise * rng.normal(),
                                     "original_glcm_Contrast": rng.normal(), "original_glcm_Idm": rng.normal()}}
            for fs, d in feats.items():
                for f, v in d.items():
                    rows.append({"case_id": f"c{i}", "condition": c, "feature_set": fs, "feature": f, "value": v})
    return pd.DataFrame(rows)


def test_family_table_medians_with_bootstrap_intervals():
    fam = I.family_table(_study_values(), "icc3_1", n_boot=100, seed=0).set_index(["feature_set", "family"])
    assert set(fam.index) == {("learned", "all"), ("learned", "latent"), ("handcrafted", "all"), ("handcrafted", "shape"),
                              ("handcrafted", "glcm")}
    assert fam.loc[("handcrafted", "shape"), "median_icc"] > 0.9  # a stable feature
    assert fam.loc[("handcrafted", "glcm"), "median_icc"] < 0.5  # pure noise
    assert fam.loc[("handcrafted", "glcm"), "n_features"] == 2 and fam.loc[("handcrafted", "all"), "n_features"] == 3
    for r in fam.itertuples():
        assert r.ci_low <= r.median_icc + 1e-9 and r.median_icc <= r.ci_high + 1e-9
    again = I.family_table(_study_values(), "icc3_1", n_boot=100, seed=0).set_index(["feature_set", "family"])
    pd.testing.assert_frame_equal(fam, again)
    assert I.feature_family("wavelet-LLH_firstorder_Mean") == "firstorder" and I.feature_family("latent_012") == "latent"


def test_input_changes_counts_lesions_whose_input_differs():
    d = pd.DataFrame([
        {"case_id": "a", "condition": "original", "feature_set": "learned", "digest": "x"},
        {"case_id": "a", "condition": "erode", "feature_set": "learned", "digest": "x"},
        {"case_id": "b", "condition": "original", "feature_set": "learned", "digest": "y"},
        {"case_id": "b", "condition": "erode", "feature_set": "learned", "digest": "z"},
        {"case_id": "a", "condition": "original", "feature_set": "handcrafted", "digest": "p"},
        {"case_id": "a", "condition": "erode", "feature_set": "handcrafted", "digest": "q"},
    ])
    ch = R.input_changes(d).set_index(["condition", "feature_set"])
    assert ch.loc[("erode", "learned"), "n_changed"] == 1 and ch.loc[("erode", "learned"), "n_lesions"] == 2
    assert ch.loc[("erode", "handcrafted"), "fraction_changed"] == 1.0
    assert R.array_digest(np.zeros(3)) == R.array_digest(np.zeros(3)) != R.array_digest(np.zeros(3, np.float32))


def test_perturbation_study_collects_input_digests_of_completed_lesions():
    def extract(cid, pert):
        if cid == "bad" and pert is not None:
            raise ValueError("boom")
        return {"learned": {"latent_000": 1.0}, R.INPUTS_KEY: {"learned": "same" if pert is None or pert.kind != "noise" else cid}}

    inputs = []
    vals = R.perturbation_study(["ok", "bad"], ["noise", "erode"], extract, 0, inputs=inputs)
    assert set(vals["case_id"]) == {"ok"} and set(vals["feature_set"]) == {"learned"}
    ch = R.input_changes(pd.DataFrame(inputs)).set_index("condition")
    assert ch.loc["noise", "n_changed"] == 1 and ch.loc["erode", "n_changed"] == 0
