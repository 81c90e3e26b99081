"""IBSI 1 compliance of PyRadiomics as radae runs it: which features match the IBSI reference values, which do not, why.

    radae ibsi --out radae/params/ibsi_compliance.csv [--data-root DIR] [--datasets phantom A B C D E]

Inputs (``radae.config.data_root()``): the IBSI 1 digital phantom (``ibsi/ibsi1_digital_phantom``), the IBSI 1 CT
phantom PAT1 (``ibsi/ibsi1_ct_phantom_PAT1/nifti``) and the consensus reference values with tolerances
(``ibsi/reference_values/ibsi_1_reference_values_*.csv``). Every image goes through radae's own wrapper
(:func:`radae.features.handcrafted.build_spec` / :func:`~radae.features.pyradiomics_call.extract_volumes`), read with
:func:`radae.io.read_image` / :func:`~radae.io.read_mask`, so the table describes the code that makes radae's tables.

PyRadiomics settings per dataset (:data:`DATASETS`): the digital phantom without discretisation (bin width 1 on its
integer grey levels, ``voxelArrayShift: 0`` so energy is IBSI's, GLDM ``alpha = 0`` = IBSI's NGLDM), in 3D and, with
``force2D``, in 2.5D; CT configurations A-D as close as PyRadiomics allows (A: 2D, FBS 25 HU, range [-500, 400];
B: 2D, 2 mm in-plane linear interpolation, FBN 32, range [-500, 400]; C: 3D, 2 mm linear, FBS 25, range [-1000, 400];
D: 3D, 2 mm linear, FBN 32, 3-sigma re-segmentation). E needs range *and* 3-sigma re-segmentation plus tricubic
interpolation; PyRadiomics has one re-segmentation mode at a time and no tricubic interpolator, so E is listed as
not configurable.

Aggregation: PyRadiomics computes one matrix per direction and averages the features over directions. In 3D that is
IBSI's "3D, averaged" (GLCM, GLRLM) and "3D" (GLSZM, NGTDM, NGLDM); with ``force2D`` its per-direction matrices pool
all slices, which is IBSI's "2.5D, direction-merged" / "2.5D". Other IBSI aggregations (2D per slice, merged
matrices) have no PyRadiomics counterpart and are listed as ``not_in_pyradiomics``.

Matching rule: ``|value - reference| <= max(tolerance, half a unit in the reference's 3rd significant digit)``; the
references are published to 3 significant digits (the digital phantom's with tolerance 0).

Output columns (:data:`COLUMNS`): dataset, ibsi_family, ibsi_feature, ibsi_tag, pyradiomics_feature, reference,
tolerance, value, abs_diff, status (match | mismatch | not_in_pyradiomics | not_configurable | no_reference), reason,
pyradiomics_version. Rows with IBSI "Diagnostics" tags compare the ROI after interpolation / re-segmentation (voxel
counts, mean, min, max), which explains most mismatches of the interpolated configurations.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

COLUMNS = ["dataset", "ibsi_family", "ibsi_feature", "ibsi_tag", "pyradiomics_feature", "reference", "tolerance",
           "value", "abs_diff", "status", "reason", "pyradiomics_version"]
STATUS_ORDER = ("mismatch", "match", "not_configurable", "not_in_pyradiomics", "no_reference")

# ----------------------------------------------------------------------------- PyRadiomics -> IBSI naming map
#: PyRadiomics ``class_Feature`` -> IBSI tag (non-texture) or tag stem (texture: the aggregation suffix is appended)
PYRADIOMICS_TO_IBSI: dict[str, str] = {
    # morphology
    "shape_MeshVolume": "morph_volume", "shape_VoxelVolume": "morph_vol_approx", "shape_SurfaceArea": "morph_area_mesh",
    "shape_SurfaceVolumeRatio": "morph_av", "shape_Sphericity": "morph_sphericity", "shape_Maximum3DDiameter": "morph_diam",
    "shape_MajorAxisLength": "morph_pca_maj_axis", "shape_MinorAxisLength": "morph_pca_min_axis",
    "shape_LeastAxisLength": "morph_pca_least_axis", "shape_Elongation": "morph_pca_elongation",
    "shape_Flatness": "morph_pca_flatness",
    # intensity statistics (raw intensities) and intensity histogram (discretised)
    "firstorder_Mean": "stat_mean", "firstorder_Variance": "stat_var", "firstorder_Skewness": "stat_skew",
    "firstorder_Kurtosis": "stat_kurt", "firstorder_Median": "stat_median", "firstorder_Minimum": "stat_min",
    "firstorder_10Percentile": "stat_p10", "firstorder_90Percentile": "stat_p90", "firstorder_Maximum": "stat_max",
    "firstorder_InterquartileRange": "stat_iqr", "firstorder_Range": "stat_range",
    "firstorder_MeanAbsoluteDeviation": "stat_mad", "firstorder_RobustMeanAbsoluteDeviation": "stat_rmad",
    "firstorder_Energy": "stat_energy", "firstorder_RootMeanSquared": "stat_rms",
    "firstorder_Entropy": "ih_entropy", "firstorder_Uniformity": "ih_uniformity",
    # grey level co-occurrence matrix
    "glcm_MaximumProbability": "cm_joint_max", "glcm_JointAverage": "cm_joint_avg", "glcm_SumSquares": "cm_joint_var",
    "glcm_JointEntropy": "cm_joint_entr", "glcm_DifferenceAverage": "cm_diff_avg", "glcm_DifferenceVariance": "cm_diff_var",
    "glcm_DifferenceEntropy": "cm_diff_entr", "glcm_SumAverage": "cm_sum_avg", "glcm_SumEntropy": "cm_sum_entr",
    "glcm_JointEnergy": "cm_energy", "glcm_Contrast": "cm_contrast", "glcm_Id": "cm_inv_diff", "glcm_Idn": "cm_inv_diff_norm",
    "glcm_Idm": "cm_inv_diff_mom", "glcm_Idmn": "cm_inv_diff_mom_norm", "glcm_InverseVariance": "cm_inv_var",
    "glcm_Correlation": "cm_corr", "glcm_Autocorrelation": "cm_auto_corr", "glcm_ClusterTendency": "cm_clust_tend",
    "glcm_ClusterShade": "cm_clust_shade", "glcm_ClusterProminence": "cm_clust_prom", "glcm_Imc1": "cm_info_corr1",
    "glcm_Imc2": "cm_info_corr2",
    # grey level run length matrix
    "glrlm_ShortRunEmphasis": "rlm_sre", "glrlm_LongRunEmphasis": "rlm_lre", "glrlm_LowGrayLevelRunEmphasis": "rlm_lgre",
    "glrlm_HighGrayLevelRunEmphasis": "rlm_hgre", "glrlm_ShortRunLowGrayLevelEmphasis": "rlm_srlge",
    "glrlm_ShortRunHighGrayLevelEmphasis": "rlm_srhge", "glrlm_LongRunLowGrayLevelEmphasis": "rlm_lrlge",
    "glrlm_LongRunHighGrayLevelEmphasis": "rlm_lrhge", "glrlm_GrayLevelNonUniformity": "rlm_glnu",
    "glrlm_GrayLevelNonUniformityNormalized": "rlm_glnu_norm", "glrlm_RunLengthNonUniformity": "rlm_rlnu",
    "glrlm_RunLengthNonUniformityNormalized": "rlm_rlnu_norm", "glrlm_RunPercentage": "rlm_r_perc",
    "glrlm_GrayLevelVariance": "rlm_gl_var", "glrlm_RunVariance": "rlm_rl_var", "glrlm_RunEntropy": "rlm_rl_entr",
    # grey level size zone matrix
    "glszm_SmallAreaEmphasis": "szm_sze", "glszm_LargeAreaEmphasis": "szm_lze", "glszm_LowGrayLevelZoneEmphasis": "szm_lgze",
    "glszm_HighGrayLevelZoneEmphasis": "szm_hgze", "glszm_SmallAreaLowGrayLevelEmphasis": "szm_szlge",
    "glszm_SmallAreaHighGrayLevelEmphasis": "szm_szhge", "glszm_LargeAreaLowGrayLevelEmphasis": "szm_lzlge",
    "glszm_LargeAreaHighGrayLevelEmphasis": "szm_lzhge", "glszm_GrayLevelNonUniformity": "szm_glnu",
    "glszm_GrayLevelNonUniformityNormalized": "szm_glnu_norm", "glszm_SizeZoneNonUniformity": "szm_zsnu",
    "glszm_SizeZoneNonUniformityNormalized": "szm_zsnu_norm", "glszm_ZonePercentage": "szm_z_perc",
    "glszm_GrayLevelVariance": "szm_gl_var", "glszm_ZoneVariance": "szm_zs_var", "glszm_ZoneEntropy": "szm_zs_entr",
    # grey level dependence matrix (alpha = 0) = IBSI neighbouring grey level dependence matrix
    "gldm_SmallDependenceEmphasis": "ngl_lde", "gldm_LargeDependenceEmphasis": "ngl_hde",
    "gldm_LowGrayLevelEmphasis": "ngl_lgce", "gldm_HighGrayLevelEmphasis": "ngl_hgce",
    "gldm_SmallDependenceLowGrayLevelEmphasis": "ngl_ldlge", "gldm_SmallDependenceHighGrayLevelEmphasis": "ngl_ldhge",
    "gldm_LargeDependenceLowGrayLevelEmphasis": "ngl_hdlge", "gldm_LargeDependenceHighGrayLevelEmphasis": "ngl_hdhge",
    "gldm_GrayLevelNonUniformity": "ngl_glnu", "gldm_DependenceNonUniformity": "ngl_dcnu",
    "gldm_DependenceNonUniformityNormalized": "ngl_dcnu_norm", "gldm_GrayLevelVariance": "ngl_gl_var",
    "gldm_DependenceVariance": "ngl_dc_var", "gldm_DependenceEntropy": "ngl_dc_entr",
    # neighbourhood grey tone difference matrix
    "ngtdm_Coarseness": "ngt_coarseness", "ngtdm_Contrast": "ngt_contrast", "ngtdm_Busyness": "ngt_busyness",
    "ngtdm_Complexity": "ngt_complexity", "ngtdm_Strength": "ngt_strength",
}
#: IBSI features that equal a PyRadiomics feature by definition although PyRadiomics dropped the duplicate name
IBSI_ALIASES: dict[str, str] = {"cm_dissimilarity": "glcm_DifferenceAverage", "cm_sum_var": "glcm_ClusterTendency"}
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: aggregation suffix of the IBSI tag for PyRadiomics' texture features, by mode
SUFFIX = {
    "3D": {"glcm": "_3D_avg", "glrlm": "_3D_avg", "glszm": "_3D", "gldm": "_3D", "ngtdm": "_3D"},
    "2.5D": {"glcm": "_2_5D_avg", "glrlm": "_2_5D_avg", "glszm": "_2_5D", "gldm": "_2_5D", "ngtdm": "_2_5D"},
}
#: IBSI diagnostic tags of the ROI and the PyRadiomics diagnostics that measure the same thing
DIAGNOSTICS_MAP: dict[str, str] = {
    "int_mask_vox_count_interp_roi": "Mask-interpolated_VoxelNum",
    "int_mask_mean_int_interp_roi": "Mask-interpolated_Mean",
    "int_mask_min_int_interp_roi": "Mask-interpolated_Minimum",
    "int_mask_max_int_interp_roi": "Mask-interpolated_Maximum",
    "int_mask_vox_count_reseg_roi": "Mask-resegmented_VoxelNum",
    "int_mask_mean_int_reseg_roi": "Mask-resegmented_Mean",
    "int_mask_min_int_reseg_roi": "Mask-resegmented_Minimum",
    "int_mask_max_int_reseg_roi": "Mask-resegmented_Maximum",
}

# ----------------------------------------------------------------------------- why features differ
#: definitional differences between PyRadiomics and IBSI, by IBSI tag stem (independent of the dataset)
DEFINITION_NOTES: dict[str, str] = {
    "stat_kurt": "PyRadiomics reports kurtosis (3 for a normal distribution); IBSI reports excess kurtosis (kurtosis - 3)",
    "pca": "PyRadiomics divides the ROI's coordinate covariance by N voxels, the IBSI reference values correspond to "
           "N - 1 (axis lengths differ by sqrt(N/(N-1)))",
    "cm_inv_diff_norm": "PyRadiomics normalises by the number of grey levels present in the ROI; IBSI by the number of "
                        "discretised grey levels Ng of the whole range",
    "cm_inv_diff_mom_norm": "PyRadiomics normalises by the number of grey levels present in the ROI; IBSI by the number "
                            "of discretised grey levels Ng of the whole range",
}
PCA_AXES = ("morph_pca_maj_axis", "morph_pca_min_axis", "morph_pca_least_axis")
INTERPOLATION_NOTE = ("interpolation differs: PyRadiomics keeps the image origin for the new grid and resamples the mask "
                      "by nearest neighbour; IBSI centres the new grid and interpolates the mask linearly (threshold 0.5), "
                      "so the ROI differs (see this dataset's int_mask_* rows)")
FBS_NOTE = ("fixed bin size: PyRadiomics starts the first bin at the ROI minimum rounded down to a multiple of the bin "
            "width, IBSI at the lower re-segmentation bound, so grey-level indices are offset")
NOT_IN_PYRADIOMICS = {
    "morph": "morphological feature not implemented in PyRadiomics",
    "loc": "local intensity features not implemented in PyRadiomics",
    "stat": "statistic not implemented in PyRadiomics",
    "ih": "PyRadiomics computes first-order statistics on raw intensities; of the intensity histogram only entropy and uniformity",
    "ivh": "intensity-volume histogram not implemented in PyRadiomics",
    "dzm": "distance zone matrix not implemented in PyRadiomics",
    "ngl": "not implemented in PyRadiomics' GLDM",
}
AGGREGATION_NOTE = {
    "2D_avg": "IBSI 2D (per-slice) aggregation: PyRadiomics pools all slices into one matrix per direction (2.5D)",
    "2D_comb": "IBSI 2D slice-wise merged matrix: PyRadiomics pools slices and averages over directions (2.5D, averaged)",
    "2D": "IBSI 2D (per-slice) aggregation: PyRadiomics pools all slices into one matrix (2.5D)",
    "2_5D_comb": "IBSI merged matrix over all directions: PyRadiomics averages features over directions",
    "3D_comb": "IBSI merged matrix over all directions: PyRadiomics averages features over directions",
}


@dataclass(frozen=True)
class Dataset:
    """One IBSI comparison: which image, which reference table, which PyRadiomics settings (None: not configurable)."""

    name: str
    reference_csv: str
    image: str  # relative to the data root
    mask: str
    modes: dict[str, dict] = field(default_factory=dict)  # "3D" / "2.5D" -> PyRadiomics settings
    interpolated: bool = False
    fixed_bin_size: bool = False
    not_configurable: str = ""


_PHANTOM = ("ibsi/ibsi1_digital_phantom/phantom.nii.gz", "ibsi/ibsi1_digital_phantom/mask.nii.gz")
_CT = ("ibsi/ibsi1_ct_phantom_PAT1/nifti/phantom.nii.gz", "ibsi/ibsi1_ct_phantom_PAT1/nifti/mask.nii.gz")
_COMMON = {"voxelArrayShift": 0, "gldm_a": 0, "distances": [1], "minimumROIDimensions": 1}
DATASETS: dict[str, Dataset] = {
    "phantom": Dataset("digital phantom", "ibsi_1_reference_values_digital_phantom.csv", *_PHANTOM, modes={
        "3D": {**_COMMON, "binWidth": 1},
        "2.5D": {**_COMMON, "binWidth": 1, "force2D": True}}),
    "A": Dataset("configuration A", "ibsi_1_reference_values_config_A.csv", *_CT, fixed_bin_size=True, modes={
        "2.5D": {**_COMMON, "binWidth": 25, "resegmentRange": [-500, 400], "force2D": True}}),
    "B": Dataset("configuration B", "ibsi_1_reference_values_config_B.csv", *_CT, interpolated=True, modes={
        "2.5D": {**_COMMON, "binCount": 32, "resegmentRange": [-500, 400], "force2D": True,
                 "resampledPixelSpacing": [2.0, 2.0, 0.0], "interpolator": "sitkLinear"}}),
    "C": Dataset("configuration C", "ibsi_1_reference_values_config_C.csv", *_CT, interpolated=True, fixed_bin_size=True, modes={
        "3D": {**_COMMON, "binWidth": 25, "resegmentRange": [-1000, 400],
               "resampledPixelSpacing": [2.0, 2.0, 2.0], "interpolator": "sitkLinear"}}),
    "D": Dataset("configuration D", "ibsi_1_reference_values_config_D.csv", *_CT, interpolated=True, modes={
        "3D": {**_COMMON, "binCount": 32, "resegmentMode": "sigma", "resegmentRange": [-3.0, 3.0],
               "resampledPixelSpacing": [2.0, 2.0, 2.0], "interpolator": "sitkLinear"}}),
    "E": Dataset("configuration E", "ibsi_1_reference_values_config_E.csv", *_CT, interpolated=True, not_configurable=(
        "needs re-segmentation to [-1000, 400] HU and 3-sigma outlier removal together (PyRadiomics applies one "
        "re-segmentation mode) and tricubic interpolation (PyRadiomics has B-spline, not tricubic)")),
}


# ----------------------------------------------------------------------------- computing
def _tag_for(feature: str, mode: str) -> str | None:
    """PyRadiomics ``class_Feature`` -> IBSI tag in aggregation ``mode`` (None if not mapped)."""
    stem = PYRADIOMICS_TO_IBSI.get(feature)
    if stem is None:
        return None
    cls = feature.split("_", 1)[0]
    return stem + SUFFIX[mode][cls] if cls in TEXTURE_CLASSES else stem


def _reverse_map(modes) -> dict[str, tuple[str, str]]:
    """IBSI tag -> (PyRadiomics class_Feature, mode) for the given modes (aliases included)."""
    out: dict[str, tuple[str, str]] = {}
    for mode in modes:
        for feat in PYRADIOMICS_TO_IBSI:
            cls = feat.split("_", 1)[0]
            if cls not in TEXTURE_CLASSES and mode != next(iter(modes)):
                continue  # non-texture features: computed once
            out[_tag_for(feat, mode)] = (feat, mode)
        for alias, feat in IBSI_ALIASES.items():
            out[alias + SUFFIX[mode]["glcm"]] = (feat, mode)
    return out


def run_dataset(ds: Dataset, root: Path) -> dict[str, tuple[dict, dict]]:
    """PyRadiomics on one dataset through radae's wrapper: mode -> (features ``class_Feature`` -> value, diagnostics)."""
    from radae.features.handcrafted import build_spec, get_extractor
    from radae.features.pyradiomics_call import extract_volumes
    from radae.io import read_image, read_mask

    image = read_image(root / ds.image)
    mask = read_mask(root / ds.mask, None, image)
    out = {}
    for mode, setting in ds.modes.items():
        classes = {c: None for c in (("shape", "firstorder") if mode == next(iter(ds.modes)) else ()) + TEXTURE_CLASSES}
        spec = build_spec({"setting": dict(setting), "imageType": {"Original": {}}, "featureClass": classes},
                          source=f"ibsi:{ds.name}:{mode}", grid="original")
        feats, diag = extract_volumes(get_extractor(spec), image, mask, keep_diagnostics=None)
        out[mode] = ({k.split("_", 1)[1]: v for k, v in feats.items()}, diag)
    return out


def effective_tolerance(reference: float, tolerance: float) -> float:
    """max(tolerance, half a unit in the reference's 3rd significant digit)."""
    tol = 0.0 if tolerance is None or not math.isfinite(tolerance) else abs(tolerance)
    if reference == 0 or not math.isfinite(reference):
        return max(tol, 5e-4)
    return max(tol, 0.5 * 10 ** (math.floor(math.log10(abs(reference))) - 2))


def _aggregation(tag: str) -> str:
    for suffix in ("2_5D_avg", "2_5D_comb", "2D_avg", "2D_comb", "3D_avg", "3D_comb", "2_5D", "2D", "3D"):
        if tag.endswith("_" + suffix):
            return suffix
    return ""


def _diag_value(diag: dict, key: str):
    v = diag.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _first_bin_note(ds: Dataset, diag: dict) -> str | None:
    """Fixed bin size: where PyRadiomics' first bin starts vs IBSI's (the lower re-segmentation bound)."""
    setting = next(iter(ds.modes.values()))
    width, bounds = setting.get("binWidth"), setting.get("resegmentRange")
    roi_min = _diag_value(diag, "Mask-resegmented_Minimum")
    if width is None or not bounds or setting.get("resegmentMode", "absolute") != "absolute" or roi_min is None:
        return None
    start = math.floor(roi_min / width) * width
    if math.isclose(start, bounds[0]):
        return None
    return FBS_NOTE + (f" (PyRadiomics' first bin starts at {start:g}, IBSI's at {bounds[0]:g}: PyRadiomics' grey-level "
                       f"indices are {abs(start - bounds[0]) / width:g} {'lower' if start > bounds[0] else 'higher'})")


def _why(ds: Dataset, stem: str, value: float, ref: float, tol: float, diag: dict) -> str:
    """The known reasons a PyRadiomics value differs from IBSI's, most specific first."""
    reasons = []
    n_voxels = _diag_value(diag, "Mask-interpolated_VoxelNum") or _diag_value(diag, "Mask-original_VoxelNum")
    if stem == "stat_kurt":
        ok = abs((value - 3.0) - ref) <= tol
        reasons.append(DEFINITION_NOTES[stem] + f"; PyRadiomics value - 3 = {value - 3.0:.4g}" + (" matches" if ok else " (still differs)"))
    elif stem in PCA_AXES and n_voxels and n_voxels > 1:
        corrected = value * math.sqrt(n_voxels / (n_voxels - 1))
        ok = abs(corrected - ref) <= tol
        reasons.append(DEFINITION_NOTES["pca"] + f"; PyRadiomics value x sqrt(N/(N-1)) = {corrected:.4g}" + (" matches" if ok else " (still differs)"))
    elif stem in DEFINITION_NOTES:
        reasons.append(DEFINITION_NOTES[stem])
    if ds.fixed_bin_size and stem.split("_")[0] in ("cm", "rlm", "szm", "ngl", "ngt"):
        note = _first_bin_note(ds, diag)
        if note:
            reasons.append(note)
    if ds.interpolated:
        reasons.append(INTERPOLATION_NOTE)
    return "; ".join(reasons) or "unexplained: same definition and settings as IBSI as far as radae knows"


def compare_dataset(key: str, root: Path, results: dict | None = None) -> pd.DataFrame:
    """The compliance rows of one dataset (``results`` from :func:`run_dataset`, computed if None)."""
    from radae.features.handcrafted import pyradiomics_version

    ds = DATASETS[key]
    ref = pd.read_csv(root / "ibsi" / "reference_values" / ds.reference_csv, encoding="utf-8-sig")
    version = pyradiomics_version()
    if not ds.not_configurable and results is None:
        results = run_dataset(ds, root)
    rev = _reverse_map(list(ds.modes) or ["3D"])
    rows = []
    for rec in ref.to_dict("records"):
        tag, family = str(rec["tag"]), str(rec["family"])
        reference, tolerance = float(rec["reference value"]), float(rec["tolerance"])
        row = {"dataset": ds.name, "ibsi_family": family, "ibsi_feature": rec["feature"], "ibsi_tag": tag,
               "pyradiomics_feature": "", "reference": reference, "tolerance": tolerance, "value": np.nan,
               "abs_diff": np.nan, "status": "", "reason": "", "pyradiomics_version": version}
        is_diag = family.startswith("Diagnostics")
        if is_diag:
            if tag not in DIAGNOSTICS_MAP:
                continue  # image-level diagnostics: PyRadiomics crops before interpolating, so they are not comparable
            row["pyradiomics_feature"] = "diagnostics_" + DIAGNOSTICS_MAP[tag]
        elif tag in rev:
            row["pyradiomics_feature"] = "original_" + rev[tag][0]
        if ds.not_configurable:
            if row["pyradiomics_feature"]:
                row.update(status="not_configurable", reason=ds.not_configurable)
                rows.append(row)
            continue
        if not row["pyradiomics_feature"]:
            agg = _aggregation(tag)
            stem = tag[: -len(agg) - 1] if agg else tag
            mapped_stems = set(PYRADIOMICS_TO_IBSI.values()) | set(IBSI_ALIASES)
            reason = AGGREGATION_NOTE.get(agg) if stem in mapped_stems else None
            row.update(status="not_in_pyradiomics",
                       reason=reason or NOT_IN_PYRADIOMICS.get(tag.split("_", 1)[0], "not implemented in PyRadiomics"))
            rows.append(row)
            continue
        if is_diag:
            first_mode = next(iter(results))
            value = _diag_value(results[first_mode][1], DIAGNOSTICS_MAP[tag])
            if value is None and "interpolated" in DIAGNOSTICS_MAP[tag]:  # no interpolation: the original mask
                value = _diag_value(results[first_mode][1], DIAGNOSTICS_MAP[tag].replace("interpolated", "original"))
        else:
            feat, mode = rev[tag]
            value = results[mode][0].get(feat)
        if is_diag and value is None:
            continue  # e.g. intensity summaries of a mask PyRadiomics did not interpolate: nothing to compare
        if value is None or not math.isfinite(reference):
            row.update(status="no_reference" if not math.isfinite(reference) else "mismatch",
                       reason="" if not math.isfinite(reference) else "PyRadiomics returned no value")
            rows.append(row)
            continue
        tol = effective_tolerance(reference, tolerance)
        diff = abs(value - reference)
        row.update(value=float(value), abs_diff=float(diff))
        if diff <= tol:
            row.update(status="match", reason="")
        else:
            stem = tag.rsplit("_" + _aggregation(tag), 1)[0] if _aggregation(tag) else tag
            row.update(status="mismatch", reason=_why(ds, stem, value, reference, tol, results[next(iter(results))][1]) if not is_diag
                       else (INTERPOLATION_NOTE if ds.interpolated else "re-segmented ROI differs"))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def compliance_table(root: Path, datasets=("phantom", "A", "B", "C", "D", "E")) -> pd.DataFrame:
    """All datasets' rows, ordered by dataset, status (mismatches first), then the reference table's order."""
    frames = []
    for i, key in enumerate(datasets):
        df = compare_dataset(key, root)
        df["_d"] = i
        df["_s"] = df["status"].map({s: j for j, s in enumerate(STATUS_ORDER)})
        df["_r"] = np.arange(len(df))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True).sort_values(["_d", "_s", "_r"], kind="mergesort")
    return out[COLUMNS].reset_index(drop=True)


def naming_map() -> pd.DataFrame:
    """The PyRadiomics -> IBSI naming map as a table (pyradiomics_feature, ibsi_tag_stem, texture aggregation)."""
    rows = [{"pyradiomics_feature": f, "ibsi_tag": t,
             "aggregation_3D": SUFFIX["3D"].get(f.split("_", 1)[0], ""), "aggregation_force2D": SUFFIX["2.5D"].get(f.split("_", 1)[0], "")}
            for f, t in PYRADIOMICS_TO_IBSI.items()]
    rows += [{"pyradiomics_feature": f, "ibsi_tag": t, "aggregation_3D": SUFFIX["3D"]["glcm"],
              "aggregation_force2D": SUFFIX["2.5D"]["glcm"]} for t, f in IBSI_ALIASES.items()]
    return pd.DataFrame(rows)


def shipped_table_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("radae") / "params" / "ibsi_compliance.csv"))

