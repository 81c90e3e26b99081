"""PyRadiomics wrapper: parameter handling, one lesion, errors, and the PyRadiomics brain1 baselines."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radae.util.errors import ConfigError
from radae.features import handcrafted as hc
from radae.features.pyradiomics_call import to_pyradiomics_image
from radae.io import read_image, read_mask

from .conftest import lesion_arrays, write_nifti

REPO = Path(__file__).resolve().parents[2]


def _spec(**setting):
    return hc.build_spec({"setting": {"binWidth": 25, **setting}, "imageType": {"Original": {}}}, grid="resampled")


def _task(tmp_path, rng, name="L1", shape=(12, 12, 12)):
    img, mask = lesion_arrays(rng, shape)
    return hc.LesionTask(name, "P", "CT", write_nifti(img, tmp_path / f"{name}_img.nii.gz", (1.5, 1.5, 1.5)),
                         write_nifti(mask, tmp_path / f"{name}_mask.nii.gz", (1.5, 1.5, 1.5)))


# ----------------------------------------------------------------------------- parameter files
@pytest.mark.parametrize("modality,file", [("CT", "ct.yaml"), ("MR", "mr.yaml"), ("PT", "pet.yaml"), ("pet", "pet.yaml")])
def test_shipped_params_valid_and_identical_to_pipelines_copy(modality, file):
    path = hc.shipped_params_path(modality)
    assert path.name == file
    spec = hc.spec_from_file(path, grid="resampled")
    assert spec.image_types == ["Original", "LoG", "Wavelet"]
    assert spec.settings["label"] == 1 and "resampledPixelSpacing" not in spec.settings
    assert (REPO / "pipelines" / "params" / file).read_bytes() == path.read_bytes()


def test_unknown_modality_needs_a_params_file():
    with pytest.raises(ConfigError, match="modality 'US'"):
        hc.shipped_params_path("US")


def test_image_types_override_keeps_file_settings_and_fills_defaults():
    params = {"imageType": {"Original": {}, "LoG": {"sigma": [4.0]}}, "setting": {"binWidth": 10, "label": 3}}
    spec = hc.build_spec(params, grid="resampled", image_types=["LoG", "Wavelet"])
    assert spec.params["imageType"] == {"LoG": {"sigma": [4.0]}, "Wavelet": {}}
    assert spec.settings["label"] == 1  # radae's masks are 0/1
    assert params["setting"]["label"] == 3  # the caller's dict is not modified
    assert "shape2D" not in spec.params["featureClass"]


def test_grid_rules_for_resampling():
    with pytest.raises(ConfigError, match="resampledPixelSpacing.*grid: original"):
        hc.build_spec({"setting": {"resampledPixelSpacing": [1, 1, 1]}}, source="x.yaml", grid="resampled")
    spec = hc.build_spec({"setting": {}}, grid="original", spacing_mm=(1.0, 1.0, 2.0))
    assert spec.settings["resampledPixelSpacing"] == [1.0, 1.0, 2.0]
    spec = hc.build_spec({"setting": {"resampledPixelSpacing": [3, 3, 3]}}, grid="original", spacing_mm=(1.0, 1.0, 2.0))
    assert spec.settings["resampledPixelSpacing"] == [3, 3, 3]  # the file wins


def test_invalid_params_are_a_config_error_naming_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("setting:\n  binWidth: -3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: PyRadiomics rejected"):
        hc.spec_from_file(p, grid="resampled")
    p.write_text("setting: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*not valid YAML"):
        hc.spec_from_file(p, grid="resampled")
    p.write_text("settings: {}\n")
    with pytest.raises(ConfigError, match="unknown PyRadiomics parameter section"):
        hc.spec_from_file(p, grid="resampled")


def test_spec_key_changes_with_settings():
    assert _spec().key == _spec().key
    assert _spec().key != _spec(binWidth=10).key


def test_extractor_built_once_per_thread():
    spec = _spec()
    assert hc.get_extractor(spec) is hc.get_extractor(spec)
    assert hc.get_extractor(spec) is not hc.get_extractor(_spec(binWidth=5))


# ----------------------------------------------------------------------------- one lesion
def test_run_lesion_features_without_diagnostics(tmp_path):
    rng = np.random.default_rng(1)
    task = _task(tmp_path, rng)
    res = hc.run_lesion(task, {"CT": _spec()})
    assert res["error"] is None
    feats = res["features"]
    assert feats and not any(k.startswith("diagnostics") for k in feats)
    assert all(isinstance(v, float) for v in feats.values())
    mask = read_mask(task.mask, None, read_image(task.image))
    assert feats["original_shape_VoxelVolume"] == pytest.approx(mask.array.sum() * 1.5**3)
    assert res["diagnostics"]["Mask-original_VoxelNum"] == int(mask.array.sum())
    assert len(res["input_sha256"]["image"]) == 64


def test_corrupted_mask_is_reported_not_raised(tmp_path):
    rng = np.random.default_rng(2)
    task = _task(tmp_path, rng)
    Path(task.mask).write_bytes(b"\x1f\x8b this is not a NIfTI file")
    res = hc.run_lesion(task, {"CT": _spec()})
    assert res["features"] is None
    assert res["file"] == task.mask
    assert "case L1" in res["error"] and "cannot read mask" in res["error"]


def test_single_voxel_lesion_is_reported(tmp_path):
    img = np.full((8, 8, 8), 10.0, np.float32)
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[4, 4, 4] = 1
    task = hc.LesionTask("tiny", "P", "CT", write_nifti(img, tmp_path / "i.nii.gz"), write_nifti(mask, tmp_path / "m.nii.gz"))
    res = hc.run_lesion(task, {"CT": _spec()})
    assert res["features"] is None and "PyRadiomics failed" in res["error"] and res["file"] == task.mask


def test_integer_valued_images_reach_pyradiomics_as_integers():
    import SimpleITK as sitk

    from radae.io.volume import Volume

    as_int = to_pyradiomics_image(Volume(np.array([[[1.0, -2.0]]], np.float32), (1.0, 1.0, 1.0)))
    as_float = to_pyradiomics_image(Volume(np.array([[[1.5, -2.0]]], np.float32), (1.0, 1.0, 1.0)))
    assert as_int.GetPixelID() == sitk.sitkInt32 and as_float.GetPixelID() == sitk.sitkFloat32


# ----------------------------------------------------------------------------- PyRadiomics' own baselines
#: brain1 shape baseline values of PyRadiomics' test data were written by PyRadiomics 2.0.1b1
#: (diagnostics_Versions_PyRadiomics); its mesh differs from 3.0.1 by < 0.1 % for these four features only.
#: brain1_resampling (written by 2.1.0) reproduces them to 1e-12, so the wrapper is not the cause.
OLD_MESH = {"original_shape_MeshVolume", "original_shape_SurfaceArea", "original_shape_SurfaceVolumeRatio",
            "original_shape_Sphericity"}


def _baseline(root: Path, column: str):
    """(feature class, settings, image types, {feature: value}, PyRadiomics version) per baseline file with ``column``."""
    out = []
    for f in sorted((root / "pyradiomics_testcases" / "baseline").glob("baseline_*.csv")):
        df = pd.read_csv(f).set_index("featureName")
        if column not in df.columns:
            continue
        col = df[column]
        settings = ast.literal_eval(col["diagnostics_Configuration_Settings"])
        types = ast.literal_eval(col["diagnostics_Configuration_EnabledImageTypes"])
        values = {k: float(v) for k, v in col.items() if not k.startswith("diagnostics_") and pd.notna(v)}
        out.append((f.stem.split("_", 1)[1], settings, types, values, col["diagnostics_Versions_PyRadiomics"]))
    return out


@pytest.mark.data
@pytest.mark.parametrize("column", ["brain1", "brain1_resampling"])
def test_brain1_baseline_reproduced_through_wrapper(data_root, column):
    case = column.split("_")[0]
    base = data_root / "pyradiomics_testcases"
    image = read_image(base / f"{case}_image.nrrd", case_id=case)
    mask = read_mask(base / f"{case}_label.nrrd", 1, image, case_id=case)
    checked, worst = 0, 0.0
    for cls, settings, types, values, version in _baseline(data_root, column):
        settings = {k: v for k, v in settings.items() if v is not None}
        spec = hc.build_spec({"setting": settings, "imageType": types, "featureClass": {cls: None}},
                             source=f"baseline_{cls}.csv", grid="original")
        feats, _ = hc.extract_volumes(hc.get_extractor(spec), image, mask)
        for name, ref in values.items():
            rel = abs(feats[name] - ref) / abs(ref) if ref else abs(feats[name])
            if column == "brain1" and name in OLD_MESH:
                assert str(version).startswith("2.0."), version
                assert rel < 1e-3, (name, feats[name], ref)
                continue
            assert rel <= 1e-6, (name, feats[name], ref)
            worst = max(worst, rel)
            checked += 1
    assert checked >= (103 if column == "brain1" else 107)
    assert math.isfinite(worst)
