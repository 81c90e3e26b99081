"""The data dictionary: one row per feature column of the tables, for the people who analyse them.

Columns: ``table`` (latent | radiomics), ``feature`` (column name), ``family`` (shape, firstorder, glcm, glrlm,
glszm, gldm, ngtdm, shape2D, latent), ``image_type`` (PyRadiomics' name: original, log-sigma-2-0-mm-3D,
wavelet-LLH, ...), ``filter`` (what that image type is, in words), ``units``, ``description`` (one line).

Units: ``I`` stands for the intensity unit of the modality (HU for CT, SUV for PET, arbitrary units for MR;
"normalised units" when PyRadiomics normalises). Texture features are computed on discretised grey levels, so their
units are grey-level indices (``GL``, depending on binWidth/binCount), voxel counts (``vox``) or none (``1``);
entropies are in bits (log2). Filtered images (LoG, wavelet) carry filtered intensities: their first-order units
are marked "filtered".
"""
from __future__ import annotations

import re

import pandas as pd

from radae.features.table import KEYS, parse_radiomics_column

DICTIONARY_COLUMNS = ["table", "feature", "family", "image_type", "filter", "units", "description"]

# (units, description) per PyRadiomics feature class and feature name
RADIOMICS_FEATURES: dict[str, dict[str, tuple[str, str]]] = {
    "shape": {
        "Elongation": ("1", "Square root of the second-largest over the largest principal-axis variance (1 = not elongated)."),
        "Flatness": ("1", "Square root of the smallest over the largest principal-axis variance (1 = not flat)."),
        "LeastAxisLength": ("mm", "Length of the smallest principal axis of the ROI (4 x sqrt of the smallest eigenvalue)."),
        "MajorAxisLength": ("mm", "Length of the largest principal axis of the ROI (4 x sqrt of the largest eigenvalue)."),
        "MinorAxisLength": ("mm", "Length of the second-largest principal axis of the ROI."),
        "Maximum2DDiameterColumn": ("mm", "Largest distance between surface-mesh vertices within one coronal (row-slice) plane."),
        "Maximum2DDiameterRow": ("mm", "Largest distance between surface-mesh vertices within one sagittal (column-slice) plane."),
        "Maximum2DDiameterSlice": ("mm", "Largest distance between surface-mesh vertices within one axial plane."),
        "Maximum3DDiameter": ("mm", "Largest distance between any two surface-mesh vertices."),
        "MeshVolume": ("mm^3", "Volume enclosed by the triangle surface mesh (marching cubes)."),
        "VoxelVolume": ("mm^3", "Number of ROI voxels times the voxel volume."),
        "SurfaceArea": ("mm^2", "Area of the triangle surface mesh."),
        "SurfaceVolumeRatio": ("1/mm", "Surface area divided by mesh volume (lower = more compact)."),
        "Sphericity": ("1", "Surface area of a sphere of the same volume divided by the ROI surface area (1 = sphere)."),
    },
    "shape2D": {
        "Elongation": ("1", "Square root of the minor over the major principal-axis variance of the 2D ROI."),
        "MajorAxisLength": ("mm", "Length of the major principal axis of the 2D ROI."),
        "MinorAxisLength": ("mm", "Length of the minor principal axis of the 2D ROI."),
        "MaximumDiameter": ("mm", "Largest distance between perimeter vertices of the 2D ROI."),
        "MeshSurface": ("mm^2", "Area enclosed by the 2D perimeter mesh."),
        "PixelSurface": ("mm^2", "Number of ROI pixels times the pixel area."),
        "Perimeter": ("mm", "Length of the 2D perimeter mesh."),
        "PerimeterSurfaceRatio": ("1/mm", "Perimeter divided by mesh surface."),
        "Sphericity": ("1", "Perimeter of a circle of the same area divided by the ROI perimeter (1 = circle)."),
    },
    "firstorder": {
        "10Percentile": ("I", "10th percentile of the voxel intensities in the ROI."),
        "90Percentile": ("I", "90th percentile of the voxel intensities in the ROI."),
        "Energy": ("I^2", "Sum of squared intensities (shifted by voxelArrayShift); grows with ROI size."),
        "TotalEnergy": ("I^2 mm^3", "Energy multiplied by the voxel volume."),
        "Entropy": ("bits", "Shannon entropy of the discretised intensity histogram (randomness of intensities)."),
        "InterquartileRange": ("I", "75th minus 25th percentile of the intensities."),
        "Kurtosis": ("1", "Fourth standardised moment of the intensities (a normal distribution gives 3, not 0)."),
        "Maximum": ("I", "Largest intensity in the ROI."),
        "Mean": ("I", "Mean intensity in the ROI."),
        "MeanAbsoluteDeviation": ("I", "Mean absolute deviation of the intensities from their mean."),
        "Median": ("I", "Median intensity in the ROI."),
        "Minimum": ("I", "Smallest intensity in the ROI."),
        "Range": ("I", "Maximum minus minimum intensity."),
        "RobustMeanAbsoluteDeviation": ("I", "Mean absolute deviation from the mean of the voxels between the 10th and 90th percentiles."),
        "RootMeanSquared": ("I", "Square root of the mean squared intensity (shifted by voxelArrayShift)."),
        "Skewness": ("1", "Third standardised moment: asymmetry of the intensity distribution."),
        "Uniformity": ("1", "Sum of squared probabilities of the discretised histogram (1 = a single grey level)."),
        "Variance": ("I^2", "Variance of the intensities (population variance, divides by N)."),
        "StandardDeviation": ("I", "Standard deviation of the intensities (deprecated in PyRadiomics)."),
    },
    "glcm": {
        "Autocorrelation": ("GL^2", "Mean product of the grey levels of neighbouring voxel pairs."),
        "ClusterProminence": ("GL^4", "Fourth moment of i+j about its mean: asymmetry and peakedness of the co-occurrence matrix."),
        "ClusterShade": ("GL^3", "Third moment of i+j about its mean: skewness of the co-occurrence matrix."),
        "ClusterTendency": ("GL^2", "Second moment of i+j about its mean: grouping of voxels with similar grey levels."),
        "Contrast": ("GL^2", "Mean squared grey-level difference of neighbouring voxels (local variation)."),
        "Correlation": ("1", "Linear dependence of a voxel's grey level on its neighbour's (-1 to 1)."),
        "DifferenceAverage": ("GL", "Mean absolute grey-level difference of neighbouring voxels."),
        "DifferenceEntropy": ("bits", "Entropy of the distribution of neighbour grey-level differences."),
        "DifferenceVariance": ("GL^2", "Variance of the neighbour grey-level differences."),
        "Id": ("1", "Inverse difference (homogeneity): pairs weighted by 1/(1+|i-j|)."),
        "Idm": ("1", "Inverse difference moment: pairs weighted by 1/(1+(i-j)^2)."),
        "Idmn": ("1", "Inverse difference moment normalised by the number of grey levels."),
        "Idn": ("1", "Inverse difference normalised by the number of grey levels."),
        "Imc1": ("1", "Informational measure of correlation 1 (mutual information of neighbour grey levels, normalised)."),
        "Imc2": ("1", "Informational measure of correlation 2 (0 = independent, 1 = fully dependent)."),
        "InverseVariance": ("GL^-2", "Pairs with different grey levels weighted by 1/(i-j)^2."),
        "JointAverage": ("GL", "Mean grey level of the first voxel of neighbouring pairs."),
        "JointEnergy": ("1", "Sum of squared co-occurrence probabilities (angular second moment)."),
        "JointEntropy": ("bits", "Entropy of the co-occurrence probabilities."),
        "MCC": ("1", "Maximal correlation coefficient: complexity of the texture (0 to 1)."),
        "MaximumProbability": ("1", "Probability of the most frequent neighbouring grey-level pair."),
        "SumAverage": ("GL", "Mean of the summed grey levels of neighbouring pairs."),
        "SumEntropy": ("bits", "Entropy of the distribution of summed neighbour grey levels."),
        "SumSquares": ("GL^2", "Variance of the grey levels around the joint average (joint variance)."),
    },
    "glrlm": {
        "GrayLevelNonUniformity": ("runs", "Variability of run counts across grey levels (lower = more homogeneous); grows with run count."),
        "GrayLevelNonUniformityNormalized": ("1", "Grey-level non-uniformity divided by the number of runs."),
        "GrayLevelVariance": ("GL^2", "Variance of the grey levels of runs."),
        "HighGrayLevelRunEmphasis": ("GL^2", "Runs weighted by squared grey level: concentration of high grey levels."),
        "LowGrayLevelRunEmphasis": ("GL^-2", "Runs weighted by inverse squared grey level: concentration of low grey levels."),
        "LongRunEmphasis": ("vox^2", "Runs weighted by squared run length: coarse texture."),
        "ShortRunEmphasis": ("vox^-2", "Runs weighted by inverse squared run length: fine texture."),
        "LongRunHighGrayLevelEmphasis": ("vox^2 GL^2", "Long runs of high grey levels."),
        "LongRunLowGrayLevelEmphasis": ("vox^2 GL^-2", "Long runs of low grey levels."),
        "ShortRunHighGrayLevelEmphasis": ("GL^2 vox^-2", "Short runs of high grey levels."),
        "ShortRunLowGrayLevelEmphasis": ("GL^-2 vox^-2", "Short runs of low grey levels."),
        "RunEntropy": ("bits", "Entropy of the joint distribution of run lengths and grey levels."),
        "RunLengthNonUniformity": ("runs", "Variability of run counts across run lengths; grows with run count."),
        "RunLengthNonUniformityNormalized": ("1", "Run-length non-uniformity divided by the number of runs."),
        "RunPercentage": ("1", "Number of runs divided by the number of voxels (1 = all runs of length 1)."),
        "RunVariance": ("vox^2", "Variance of the run lengths."),
    },
    "glszm": {
        "GrayLevelNonUniformity": ("zones", "Variability of zone counts across grey levels; grows with zone count."),
        "GrayLevelNonUniformityNormalized": ("1", "Grey-level non-uniformity divided by the number of zones."),
        "GrayLevelVariance": ("GL^2", "Variance of the grey levels of zones."),
        "HighGrayLevelZoneEmphasis": ("GL^2", "Zones weighted by squared grey level."),
        "LowGrayLevelZoneEmphasis": ("GL^-2", "Zones weighted by inverse squared grey level."),
        "LargeAreaEmphasis": ("vox^2", "Zones weighted by squared zone size: coarse texture."),
        "SmallAreaEmphasis": ("vox^-2", "Zones weighted by inverse squared zone size: fine texture."),
        "LargeAreaHighGrayLevelEmphasis": ("vox^2 GL^2", "Large zones of high grey levels."),
        "LargeAreaLowGrayLevelEmphasis": ("vox^2 GL^-2", "Large zones of low grey levels."),
        "SmallAreaHighGrayLevelEmphasis": ("GL^2 vox^-2", "Small zones of high grey levels."),
        "SmallAreaLowGrayLevelEmphasis": ("GL^-2 vox^-2", "Small zones of low grey levels."),
        "SizeZoneNonUniformity": ("zones", "Variability of zone counts across zone sizes; grows with zone count."),
        "SizeZoneNonUniformityNormalized": ("1", "Size-zone non-uniformity divided by the number of zones."),
        "ZoneEntropy": ("bits", "Entropy of the joint distribution of zone sizes and grey levels."),
        "ZonePercentage": ("1", "Number of zones divided by the number of voxels."),
        "ZoneVariance": ("vox^2", "Variance of the zone sizes."),
    },
    "gldm": {
        "DependenceEntropy": ("bits", "Entropy of the joint distribution of dependence counts and grey levels."),
        "DependenceNonUniformity": ("vox", "Variability of voxel counts across dependence sizes; grows with ROI size."),
        "DependenceNonUniformityNormalized": ("1", "Dependence non-uniformity divided by the number of voxels."),
        "DependenceVariance": ("neighbours^2", "Variance of the dependence counts (similar neighbours per voxel)."),
        "GrayLevelNonUniformity": ("vox", "Variability of voxel counts across grey levels; grows with ROI size."),
        "GrayLevelVariance": ("GL^2", "Variance of the grey levels."),
        "HighGrayLevelEmphasis": ("GL^2", "Voxels weighted by squared grey level."),
        "LowGrayLevelEmphasis": ("GL^-2", "Voxels weighted by inverse squared grey level."),
        "LargeDependenceEmphasis": ("neighbours^2", "Voxels weighted by squared dependence count: homogeneous texture."),
        "SmallDependenceEmphasis": ("neighbours^-2", "Voxels weighted by inverse squared dependence count: heterogeneous texture."),
        "LargeDependenceHighGrayLevelEmphasis": ("neighbours^2 GL^2", "Large dependences of high grey levels."),
        "LargeDependenceLowGrayLevelEmphasis": ("neighbours^2 GL^-2", "Large dependences of low grey levels."),
        "SmallDependenceHighGrayLevelEmphasis": ("GL^2 neighbours^-2", "Small dependences of high grey levels."),
        "SmallDependenceLowGrayLevelEmphasis": ("GL^-2 neighbours^-2", "Small dependences of low grey levels."),
    },
    "ngtdm": {
        "Busyness": ("1", "Rapid changes of intensity between a voxel and its neighbourhood."),
        "Coarseness": ("GL^-1", "Inverse of the summed grey-tone differences: large = uniform, slowly changing texture."),
        "Complexity": ("GL", "Non-uniformity and rapid grey-level changes (many primitives, edges)."),
        "Contrast": ("GL^2", "Dynamic range of grey levels combined with the spatial rate of change."),
        "Strength": ("GL", "Large, distinct primitives: high when the texture is easy to see."),
    },
}

_LOG = re.compile(r"^log-sigma-(\d+)-(\d+)-mm-3D$")
_WAVELET = re.compile(r"^wavelet(\d*)-([LH]+)$")
_INTENSITY_UNIT = {"CT": "HU", "PT": "SUV", "PET": "SUV", "MR": "a.u.", "MRI": "a.u."}


def describe_image_type(image_type: str, wavelet: str = "coif1") -> str:
    """PyRadiomics image type name -> what it is, in words."""
    if image_type == "original":
        return "none (original image)"
    m = _LOG.match(image_type)
    if m:
        return f"Laplacian of Gaussian, sigma {m[1]}.{m[2]} mm"
    m = _WAVELET.match(image_type)
    if m:
        axes = ", ".join(f"{'low' if c == 'L' else 'high'}-pass {ax}" for c, ax in zip(m[2], "xyz"))
        level = m[1] or "1"
        return f"undecimated wavelet ({wavelet}) level {level}: {axes}"
    named = {"square": "square of the intensities", "squareroot": "square root of |intensity|",
             "logarithm": "logarithm of |intensity|", "exponential": "exponential of the intensities",
             "gradient": "gradient magnitude", "lbp-2D": "local binary pattern (2D)"}
    for k, v in named.items():
        if image_type.startswith(k):
            return v
    return image_type


def intensity_unit(normalised_by_modality: dict[str, bool]) -> str:
    """Intensity unit text for a table's modalities (``{"CT": False, "MR": True}`` -> "HU / normalised units")."""
    units = sorted({"normalised units" if norm else _INTENSITY_UNIT.get(str(m).upper(), "a.u.")
                    for m, norm in normalised_by_modality.items()}) or ["a.u."]
    return " / ".join(units)


def _units(code: str, cls: str, image_type: str, unit_i: str) -> str:
    """Unit code of the table above -> text; ``I`` (first-order intensity unit) becomes the modality's unit."""
    if cls != "firstorder" or not code.startswith("I"):
        return code
    unit = f"({unit_i})" if " " in unit_i and code != "I" else unit_i
    base = unit + code[1:]
    return base if image_type == "original" else f"{base} (filtered)"


def data_dictionary(radiomics_columns=(), latent_columns=(), *, unit: str = "a.u.", latent_meta: dict | None = None,
                    wavelet: str = "coif1") -> pd.DataFrame:
    """The data dictionary for the given columns (keys excluded), in table order; ``unit``: see :func:`intensity_unit`."""
    unit_i = unit
    rows = []
    for col in latent_columns:
        if col in KEYS:
            continue
        kind = (latent_meta or {}).get("kind", "")
        what = {"vae": "posterior mean (mu)", "dae": "bottleneck activation"}.get(kind, "latent value")
        idx = int(str(col).rsplit("_", 1)[-1])
        rows.append({"table": "latent", "feature": col, "family": "latent", "image_type": "roi",
                     "filter": "normalised ROI from radae's preprocessing" + (" + mask channel" if (latent_meta or {}).get("in_channels") == 2 else ""),
                     "units": "1", "description": f"Learned feature {idx}: the trained encoder's {what} for dimension {idx} "
                                                  "(no fixed meaning; compare within this model only)."})
    for col in radiomics_columns:
        if col in KEYS:
            continue
        parsed = parse_radiomics_column(str(col))
        if parsed is None:
            rows.append({"table": "radiomics", "feature": col, "family": "", "image_type": "", "filter": "",
                         "units": "", "description": "not a PyRadiomics feature name"})
            continue
        image_type, cls, name = parsed
        code, desc = RADIOMICS_FEATURES.get(cls, {}).get(name, ("", f"PyRadiomics {cls} feature {name} (see PyRadiomics documentation)."))
        rows.append({"table": "radiomics", "feature": col, "family": cls, "image_type": image_type,
                     "filter": describe_image_type(image_type, wavelet), "units": _units(code, cls, image_type, unit_i),
                     "description": desc})
    return pd.DataFrame(rows, columns=DICTIONARY_COLUMNS)
