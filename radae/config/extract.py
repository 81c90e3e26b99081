"""``extract:`` — PyRadiomics settings and learned-feature heads."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from radae.config.base import _Model


# ----------------------------------------------------------------------------- extract
class RadiomicsConfig(_Model):
    """PyRadiomics features. ``grid: resampled`` runs on preprocess's lesion crop (radae's grid, raw intensities);
    ``original`` on the original image with PyRadiomics' own resampling to preprocess.spacing_mm."""

    enabled: bool = True
    params: Path | None = None  # PyRadiomics parameter YAML; default: shipped one for the modality (radae/params/)
    grid: Literal["resampled", "original"] = "resampled"
    image_types: tuple[Literal["Original", "LoG", "Wavelet"], ...] | None = None  # subset of the params file's; None = as the file

    @field_validator("image_types")
    @classmethod
    def _types(cls, v):
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("image_types must list each image type at most once and at least one")
        return v


class LatentConfig(_Model):
    enabled: bool = True
    tta_flips: bool = False  # average the latent over the 8 flips of the ROI
    batch_size: int = Field(32, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16: autocast the encoder to bfloat16 (CPUs with AVX512-BF16/AMX and GPUs: ~2x faster; latents within ~1 %)
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = True  # channels-last-3d memory layout for the encoder (same fp32 maths, faster kernels)
    # feature heads besides the bottleneck (radae.features.heads): pooled -> learned_pooled, anomaly -> anomaly,
    # random -> random_encoder / random_pooled (the untrained-encoder control)
    heads: tuple[Literal["pooled", "anomaly", "random"], ...] = ("pooled", "anomaly", "random")


class ExtractConfig(_Model):
    latent: LatentConfig = LatentConfig()
    radiomics: RadiomicsConfig = RadiomicsConfig()
    n_jobs: int = Field(1, ge=1, le=256)  # PyRadiomics workers (process pool, or LocalCluster workers with dask)
    executor: Literal["process", "dask"] = "process"
    dask_address: str | None = None  # None with executor=dask: a LocalCluster
    aggregate: Literal["all", "largest", "volume_weighted_mean"] = "all"  # patient-level tables besides the lesion ones

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        if isinstance(data, dict) and "on_error" in data:
            raise ValueError("extract.on_error moved to the top-level key on_error (it applies to every stage that "
                             "meets a broken case: ingest, preprocess, extract) -> write `on_error: ...` at the top of the YAML")
        return data
