"""``preprocess:`` — resampling, normalisation per modality, ROI and patch sizes, the cache."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from radae.config.base import MAX_ROI_VOX, _Model


# ----------------------------------------------------------------------------- preprocess
class NormaliseConfig(_Model):
    """Per-modality intensity normalisation.

    ct: clip to [hu_min, hu_max] then scale to [0, 1]; mr: z-score inside ``mr_region``;
    pet: SUV as is, optionally clipped at ``suv_max`` and divided by ``suv_scale``.
    Any other modality uses ``other`` (zscore over the whole volume by default).
    """

    hu_min: float = -1000.0
    hu_max: float = 400.0
    mr_region: Literal["roi", "body", "volume"] = "body"
    suv_max: float | None = 20.0
    suv_scale: float = 10.0
    other: Literal["zscore", "minmax", "none"] = "zscore"

    @model_validator(mode="after")
    def _order(self) -> "NormaliseConfig":
        if self.hu_max <= self.hu_min:
            raise ValueError("hu_max must be greater than hu_min")
        if self.suv_scale <= 0:
            raise ValueError("suv_scale must be > 0")
        return self


class PatchConfig(_Model):
    """Random whole-volume patches for unlabeled pretraining (foreground-weighted)."""

    per_volume: int = Field(4, ge=0, le=1000)
    foreground_fraction: float = Field(0.5, ge=0.0, le=1.0)


class PreprocessConfig(_Model):
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: Literal["linear", "bspline", "nearest"] = "linear"
    mask_interpolation: Literal["linear_threshold", "nearest"] = "linear_threshold"
    roi_size_vox: tuple[int, int, int] = (64, 64, 64)
    normalise: NormaliseConfig = NormaliseConfig()
    mask_channel: bool = False
    # ROI crop centre: "exact" = the mask's centre of mass with sub-voxel (linear) resampling, so a perturbed mask moves
    # the encoder's input; "voxel" = the rounded centroid (the earlier behaviour; ROIs bit-identical under small mask edits)
    crop_centre: Literal["exact", "voxel"] = "exact"
    patches: PatchConfig = PatchConfig()
    radiomics_margin_vox: int = Field(8, ge=0, le=64)  # margin around the lesion bbox kept for PyRadiomics
    cache_dir: Path | None = None  # default: <runs root>/cache, shared by pipelines
    n_jobs: int = Field(1, ge=1, le=256)
    max_voxels: int = Field(400_000_000, ge=1000)  # refuse volumes larger than this (memory guard)

    @field_validator("spacing_mm")
    @classmethod
    def _spacing(cls, v):
        for s in v:
            if not (0.05 <= s <= 20.0):
                raise ValueError(f"each spacing must be within [0.05, 20] mm, got {list(v)}")
        return v

    @field_validator("roi_size_vox")
    @classmethod
    def _roi(cls, v):
        for s in v:
            if not (4 <= s <= MAX_ROI_VOX):
                raise ValueError(f"each ROI size must be within [4, {MAX_ROI_VOX}] voxels, got {list(v)}")
        return v
