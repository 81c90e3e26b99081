"""Pipeline YAML -> frozen, validated pydantic models: one module per stage section, plus PipelineConfig and loading.

Everything is checked at load time, before any I/O on images: unknown keys, wrong types,
impossible values and missing files are one ``ConfigError`` line naming the file, the key path
and what was expected. Paths are resolved relative to the YAML file; ``${RADAE_DATA}`` in a
path expands to the data root (env ``RADAE_DATA``, default ``../shared/data`` beside the project).
"""
from __future__ import annotations

from radae.config.base import MAX_ROI_VOX, STAGES, Seed, data_root, stable_hash
from radae.config.data import DataConfig, NpzSource, SynthConfig
from radae.config.preprocess import NormaliseConfig, PatchConfig, PreprocessConfig
from radae.config.pretrain import ContractiveConfig, ModelConfig, NoiseConfig, PretrainConfig, SparseConfig
from radae.config.extract import ExtractConfig, LatentConfig, RadiomicsConfig
from radae.config.benchmark import BenchmarkConfig, CVConfig, ClassificationTask, ExternalConfig, HarmoniseConfig, RobustnessConfig, SurvivalTask
from radae.config.pipeline import PipelineConfig, ReportConfig
from radae.config.load import apply_overrides, format_validation_error, load_pipeline

__all__ = ["MAX_ROI_VOX", "STAGES", "Seed", "data_root", "stable_hash", "DataConfig", "NpzSource", "SynthConfig", "NormaliseConfig", "PatchConfig", "PreprocessConfig", "ContractiveConfig", "ModelConfig", "NoiseConfig", "PretrainConfig", "SparseConfig", "ExtractConfig", "LatentConfig", "RadiomicsConfig", "BenchmarkConfig", "CVConfig", "ClassificationTask", "ExternalConfig", "HarmoniseConfig", "RobustnessConfig", "SurvivalTask", "PipelineConfig", "ReportConfig", "apply_overrides", "format_validation_error", "load_pipeline"]
