"""extract_volumes: radae's own kept diagnostics equal PyRadiomics' general-info pass, and features are unchanged.

The reference is always the same extractor run with ``additionalInfo`` on (PyRadiomics' own diagnostics), on the
images radae hands over (``to_pyradiomics_image``, the 0/1 mask's ``to_sitk``). Volumes are tiny and synthetic.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from radae.features.handcrafted import build_spec, get_extractor
from radae.features.pyradiomics_call import (KEPT_DIAGNOSTICS, computes_own_diagnostics, extract_volumes,
                                             split_result, to_pyradiomics_image)
from radae.io.volume import Volume

PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": None, "shape": None, "glcm": None},
          "setting": {"binWidth": 25}}
SHAPE_ZYX = (10, 12, 14)
KEPT_KEYS = {f"Image-original_{n}" for n in ("Hash", "Spacing", "Size")} | {
    f"Mask-original_{n}" for n in ("Hash", "Spacing", "Size", "BoundingBox", "VoxelNum", "VolumeNum")}
OBLIQUE = tuple(sitk.VersorTransform((0.3, -0.5, 0.8), 0.6).GetMatrix())


def _params(**setting) -> dict:
    return {**PARAMS, "setting": {**PARAMS["setting"], **setting}}


def _extractor(params=PARAMS):
    return get_extractor(build_spec(params, grid="original"))


def _ball(center_zyx, radius, shape=SHAPE_ZYX) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = center_zyx
    return ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= radius ** 2).astype(np.uint8)


def _case(name: str) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(sum(map(ord, name)))
    image = rng.normal(100.0, 30.0, SHAPE_ZYX).astype(np.float32)
    mask = _ball((5, 6, 7), 3.2)
    spacing, origin, direction = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if name == "integer":
        image = np.round(image * 10 - 500)
    elif name == "two_parts":
        mask = _ball((3, 3, 3), 2.2) | _ball((6, 8, 10), 2.6)
    elif name == "border":
        mask = np.zeros(SHAPE_ZYX, np.uint8)
        mask[:4, 7:, 0:5] = 1  # touches z = 0, y = last, x = 0
        mask[3, 11, 13] = 1  # and x = last, as a separate part
    elif name == "corner_touch":
        mask = np.zeros(SHAPE_ZYX, np.uint8)
        mask[2:5, 2:5, 2:5] = 1
        mask[5:7, 5:7, 5:8] = 1  # meets the first cube at one corner only: one part when 26-connected
    elif name == "anisotropic_oblique":
        spacing, origin, direction = (0.7, 1.3, 2.6), (-40.5, 12.25, 101.0), OBLIQUE
    img = Volume(image.astype(np.float32), spacing, origin, direction)
    return img, Volume(mask.astype(np.uint8), spacing, origin, direction)


def _reference(extractor, img: Volume, mask: Volume, keep=KEPT_DIAGNOSTICS):
    """PyRadiomics' own answer: the same extractor with additionalInfo on, on the same two SimpleITK images."""
    assert extractor.settings["additionalInfo"] is True
    return split_result(extractor.execute(to_pyradiomics_image(img), mask.to_sitk(), label=1), keep)


def _dumps(d: dict) -> str:
    return json.dumps(d, sort_keys=True)


CASES = ["float", "integer", "two_parts", "border", "corner_touch", "anisotropic_oblique"]


@pytest.mark.parametrize("name", CASES)
def test_own_diagnostics_and_features_equal_pyradiomics(name):
    img, mask = _case(name)
    ex = _extractor()
    assert computes_own_diagnostics(ex.settings, KEPT_DIAGNOSTICS)  # radae's own diagnostics are what is tested
    feats, diag = extract_volumes(ex, img, mask)
    assert ex.settings["additionalInfo"] is True
    ref_feats, ref_diag = _reference(ex, img, mask)
    assert set(ref_diag) == KEPT_KEYS
    assert list(feats) == list(ref_feats) and feats == ref_feats
    assert _dumps(diag) == _dumps(ref_diag)
    assert len(feats) > 30 and all(k.startswith("original_") for k in feats)


def test_cases_cover_what_they_claim():
    """The cases above exercise the paths they are named for (Int32 cast, parts, border, geometry)."""
    ex = _extractor()
    img, _ = _case("integer")
    assert to_pyradiomics_image(img).GetPixelID() == sitk.sitkInt32
    img, _ = _case("float")
    assert to_pyradiomics_image(img).GetPixelID() == sitk.sitkFloat32
    _, diag = extract_volumes(ex, *_case("two_parts"))
    assert diag["Mask-original_VolumeNum"] == 2
    _, diag = extract_volumes(ex, *_case("border"))
    box = diag["Mask-original_BoundingBox"]
    assert box[:3] == [0, 7, 0] and [box[0] + box[3], box[1] + box[4]] == [14, 12]
    assert diag["Mask-original_VolumeNum"] == 2 and diag["Mask-original_VoxelNum"] == 4 * 5 * 5 + 1
    _, diag = extract_volumes(ex, *_case("corner_touch"))
    assert diag["Mask-original_VolumeNum"] == 1 and diag["Mask-original_VoxelNum"] == 27 + 12
    img, mask = _case("anisotropic_oblique")
    _, diag = extract_volumes(ex, img, mask)
    assert diag["Image-original_Spacing"] == list(img.spacing_mm) == [0.7, 1.3, 2.6]
    assert diag["Mask-original_Size"] == [14, 12, 10]


def test_normalised_log_extraction_keeps_original_diagnostics():
    """normalize and a LoG image type change the images PyRadiomics computes on, not the "original" diagnostics."""
    params = {"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
              "featureClass": {"firstorder": None, "glcm": None}, "setting": {"binWidth": 0.5, "normalize": True}}
    ex = _extractor(params)
    assert computes_own_diagnostics(ex.settings, KEPT_DIAGNOSTICS)
    img, mask = _case("anisotropic_oblique")
    feats, diag = extract_volumes(ex, img, mask)
    ref_feats, ref_diag = _reference(ex, img, mask)
    assert feats == ref_feats and any(k.startswith("log-sigma-1-0-mm-3D_") for k in feats)
    assert _dumps(diag) == _dumps(ref_diag)


def test_additional_info_restored_when_pyradiomics_raises():
    ex = _extractor()
    img, _ = _case("float")
    one = np.zeros(SHAPE_ZYX, np.uint8)
    one[5, 6, 7] = 1
    with pytest.raises(ValueError):
        extract_volumes(ex, img, Volume(one, img.spacing_mm, img.origin_mm, img.direction))
    assert ex.settings["additionalInfo"] is True
    feats, diag = extract_volumes(ex, *_case("float"))  # the extractor is still whole for the next lesion
    assert set(diag) == KEPT_KEYS and feats


def test_additional_info_off_in_the_parameters_gives_no_diagnostics():
    ex = _extractor(_params(additionalInfo=False))
    img, mask = _case("float")
    feats, diag = extract_volumes(ex, img, mask)
    assert diag == {} and ex.settings["additionalInfo"] is False
    ex.settings["additionalInfo"] = True
    try:
        ref_feats, _ = _reference(ex, img, mask)
    finally:
        ex.settings["additionalInfo"] = False
    assert feats == ref_feats


def test_resampling_keeps_pyradiomics_own_diagnostics():
    ex = _extractor(_params(resampledPixelSpacing=[1, 1, 1]))
    assert not computes_own_diagnostics(ex.settings, KEPT_DIAGNOSTICS)
    img, mask = _case("anisotropic_oblique")
    feats, diag = extract_volumes(ex, img, mask)
    assert ex.settings["additionalInfo"] is True
    assert "Mask-interpolated_VoxelNum" in diag and "Image-interpolated_Spacing" in diag
    assert diag["Image-interpolated_Spacing"] == [1.0, 1.0, 1.0]
    assert KEPT_KEYS <= set(diag)
    ref_feats, ref_diag = _reference(ex, img, mask)
    assert feats == ref_feats and _dumps(diag) == _dumps(ref_diag)


def test_keep_none_returns_every_pyradiomics_diagnostic():
    ex = _extractor()
    img, mask = _case("integer")
    assert not computes_own_diagnostics(ex.settings, None)
    feats, diag = extract_volumes(ex, img, mask, keep_diagnostics=None)
    for key in ("Image-original_Mean", "Image-original_Minimum", "Image-original_Dimensionality",
                "Mask-original_CenterOfMassIndex", "Versions_PyRadiomics"):
        assert key in diag
    assert KEPT_KEYS < set(diag)
    assert diag["Image-original_Minimum"] == float(img.array.min())
    ref_feats, ref_diag = _reference(ex, img, mask, keep=None)
    assert feats == ref_feats and _dumps(diag) == _dumps(ref_diag)
