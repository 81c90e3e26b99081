"""Pipeline YAML -> frozen, validated pydantic models. One model per stage plus PipelineConfig.

Everything is checked at load time, before any I/O on images: unknown keys, wrong types,
impossible values and missing files are one ``ConfigError`` line naming the file, the key path
and what was expected. Paths are resolved relative to the YAML file; ``${RADAE_DATA}`` in a
path expands to the data root (env ``RADAE_DATA``, default ``../shared/data`` beside the project).
"""
from __future__ import annotations

import hashlib
import json
import os
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radae.util.errors import ConfigError
from radae.util.yamlsafe import load_bounded

#: a seed every consumer takes (numpy's SeedSequence wants >= 0; torch.manual_seed and NumPy's legacy API want < 2**32)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

STAGES = ("ingest", "preprocess", "pretrain", "extract", "benchmark", "report")
MAX_ROI_VOX = 256  # a sane upper bound per axis for a fixed-size ROI


def data_root() -> Path:
    """The real-data root: env ``RADAE_DATA`` or ``../shared/data`` next to the project root."""
    env = os.environ.get("RADAE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[3] / "shared" / "data").resolve()


class _Model(BaseModel):
    # allow_inf_nan=False: `hu_min: .nan` (or .inf) is refused here, not cached as NaN ROIs three stages later
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- data / ingest
class SynthConfig(_Model):
    """Generate the synthetic cohort into the run folder before ingest (the built-in demo data)."""

    cases: int = Field(40, ge=4, le=5000)
    seed: Seed = 0
    size_vox: int = Field(48, ge=24, le=256)
    multi_lesion_fraction: float = Field(0.2, ge=0.0, le=1.0)
    sites: int = Field(1, ge=1, le=8)  # > 1: manifest gets `site` (with a planted intensity effect) and `cohort` (A/B halves)


class NpzSource(_Model):
    """MedMNIST-style arrays imported into the run folder (NIfTI + manifest) before ingest.

    ``evaluation``: which cases are evaluation patients (kept out of pretraining, used by the benchmark):
    every case of ``evaluation_splits`` plus a seeded ``evaluation_fraction`` of the other splits.
    """

    path: Path
    splits: tuple[str, ...] = ("train", "val")
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mask_rule: Literal["threshold", "cube"] = "threshold"
    evaluation_splits: tuple[str, ...] = ("val",)
    evaluation_fraction: float = Field(0.5, ge=0.0, le=1.0)
    seed: Seed = 0


class DataConfig(_Model):
    manifest: Path | None = None  # CSV or Parquet; relative to the YAML file
    synth: SynthConfig | None = None  # instead of a manifest: generate the synthetic cohort
    npz: NpzSource | None = None  # instead of a manifest: import MedMNIST-style arrays
    root: Path | None = None  # if set, manifest paths may not escape it
    modalities: list[str] | None = None  # keep only these modalities (e.g. ["MR"])
    evaluation_patients: Path | None = None  # text file, one patient_id per line
    # without evaluation_patients: hold this seeded fraction of the labelled patients out of pretraining (they become
    # the evaluation patients); None = no hold-out (pretraining then sees every benchmarked patient; the report warns)
    holdout_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    pseudonymise_patients: bool = False  # replace patient_id by a keyed hash (key: env RADAE_PSEUDO_KEY)

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if sum(x is not None for x in (self.manifest, self.synth, self.npz)) != 1:
            raise ValueError("give exactly one of data.manifest, data.synth or data.npz")
        return self


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


# ----------------------------------------------------------------------------- pretrain
class SparseConfig(_Model):
    kind: Literal["none", "l1", "kl"] = "none"
    weight: float = Field(1e-3, ge=0.0)
    target: float = Field(0.05, gt=0.0, lt=1.0)


class ContractiveConfig(_Model):
    """Contractive penalty ``weight * ||d code / d input||_F^2`` (random-projection estimate, double backprop)."""

    weight: float = Field(0.0, ge=0.0)
    projections: int = Field(1, ge=1, le=64)


class ModelConfig(_Model):
    kind: Literal["dae", "vae"] = "dae"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = Field(1, ge=0, le=8)
    norm: Literal["batch", "instance", "group", "none"] = "batch"  # instance/group norm erase each patch's intensity level
    latent_dim: int = Field(64, ge=2, le=4096)
    latent_mode: Literal["pool", "flatten"] = "flatten"
    upsample: Literal["transpose", "upsample"] = "transpose"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    beta: float = Field(1.0, ge=0.0)
    kl_warmup_steps: int = Field(0, ge=0)
    sparse: SparseConfig = SparseConfig()
    contractive: ContractiveConfig = ContractiveConfig()

    @model_validator(mode="after")
    def _levels(self) -> "ModelConfig":
        if len(self.channels) != len(self.strides):
            raise ValueError("model.channels and model.strides must have the same length")
        if not self.channels:
            raise ValueError("model.channels needs at least one level")
        if min(self.channels) < 1 or min(self.strides) < 1:
            raise ValueError("model.channels and model.strides must be positive integers")
        if self.kind == "vae" and self.sparse.kind != "none":
            raise ValueError("model.sparse applies to the plain autoencoder (kind: dae); the VAE is regularised by beta * KL")
        return self


class NoiseConfig(_Model):
    # auto: CT gaussian, MR rician, PET poisson; mask: random 3D blocks zeroed (masked-volume corruption)
    kind: Literal["auto", "gaussian", "rician", "poisson", "mask", "none"] = "auto"
    sigma: tuple[float, float] = (0.05, 0.15)  # sampled uniformly per batch, in normalised units
    mask_ratio: float = Field(0.5, gt=0.0, lt=1.0)  # kind mask: probability that a block is zeroed
    mask_block_vox: int = Field(4, ge=1, le=64)  # kind mask: edge of the zeroed cubes, voxels

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v):
        if v[0] < 0 or v[1] < v[0]:
            raise ValueError("noise.sigma must be [low, high] with 0 <= low <= high")
        return v


class PretrainConfig(_Model):
    model: ModelConfig = ModelConfig()
    noise: NoiseConfig = NoiseConfig()
    loss: Literal["mse", "l1", "ssim_mse"] = "mse"
    ssim_weight: float = Field(0.5, ge=0.0, le=1.0)  # ssim_mse: w * (1 - SSIM) + (1 - w) * MSE
    sources: tuple[Literal["rois", "patches"], ...] = ("rois", "patches")
    include_evaluation_patients: bool = False
    # one autoencoder on several modalities (e.g. MR and PET lesions together) only when asked for
    allow_mixed_modalities: bool = False
    steps: int = Field(200, ge=1)
    epochs: float | None = Field(None, gt=0.0, le=100000.0)  # budget in passes over the training items (overrides steps)
    max_minutes: float | None = Field(None, gt=0.0)  # wall-clock budget of the training loop; ends the run early
    batch_size: int = Field(8, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_steps: int = Field(10, ge=0)
    grad_clip: float = Field(1.0, gt=0.0)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # channels_last_3d memory layout (CUDA and CPU; same maths, faster kernels)
    augment: bool = True
    val_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    eval_every: int = Field(50, ge=1)
    early_stopping_patience: int = Field(0, ge=0)  # in evaluations; 0 = off
    checkpoint_every: int = Field(100, ge=1)
    preview_every: int = Field(0, ge=0)  # steps; 0 = only at the end
    num_workers: int = Field(0, ge=0, le=64)
    loader: Literal["auto", "resident", "stream"] = "auto"  # resident: all patches in (GPU) memory; stream: DataLoader from disk
    log_every: int = Field(10, ge=1)  # steps between metrics rows
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False  # torch.use_deterministic_algorithms on GPU


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
    on_error: Literal["skip", "raise"] = "skip"


# ----------------------------------------------------------------------------- benchmark
class ClassificationTask(_Model):
    label: str  # manifest column, binary 0/1 (or true/false)


class SurvivalTask(_Model):
    time: str  # manifest column, follow-up time (>= 0, any unit; horizons use the same unit)
    event: str  # manifest column, 1 = event, 0 = censored
    horizons: tuple[float, ...] = ()  # for time-dependent AUC; default: quartiles of the training folds' event times
    # [start, end] of the integrated Brier score (same for every fold); default: the 10th-90th percentile window
    # that every outer training fold's event times agree on
    ibs_window: tuple[float, float] | None = None

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v):
        if any(h <= 0 for h in v):
            raise ValueError("survival.horizons must be > 0")
        return tuple(sorted(set(v)))

    @field_validator("ibs_window")
    @classmethod
    def _ibs_window(cls, v):
        if v is not None and not (0 <= v[0] < v[1]):
            raise ValueError("survival.ibs_window must be [start, end] with 0 <= start < end")
        return v


class CVConfig(_Model):
    folds: int = Field(5, ge=2, le=20)
    repeats: int = Field(3, ge=1, le=100)
    inner_folds: int = Field(3, ge=2, le=10)
    seed: Seed = 0


class RobustnessConfig(_Model):
    enabled: bool = True
    perturbations: tuple[Literal["noise", "resample", "rotate", "translate", "erode", "dilate"], ...] = (
        "noise",
        "resample",
        "rotate",
        "translate",
        "erode",
        "dilate",
    )
    icc: Literal["icc3_1", "icc2_1"] = "icc3_1"
    max_lesions: int = Field(30, ge=3)  # lesions in the perturbation study (a seeded random subset if more)
    robust_only: bool = False  # keep only features with ICC >= threshold, decided on each training fold
    threshold: float = Field(0.75, ge=0.0, le=1.0)
    noise_scale: float = Field(1.0, gt=0.0, le=10.0)  # added noise std / the image's estimated noise std
    resample_factor: float = Field(1.5, gt=1.0, le=4.0)  # down-sample by this and back
    rotation_deg: float = Field(10.0, gt=0.0, le=45.0)  # largest rotation
    translation_vox: float = Field(1.0, gt=0.0, le=5.0)  # largest shift per axis


class ExternalConfig(_Model):
    """External validation: develop (nested CV, then refit) on rows whose ``column`` is in ``develop``,
    apply the locked models once to rows in ``validate``. Values compare as text ("true" matches True)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, serialize_by_alias=True, validate_by_name=True)
    column: str
    develop: tuple[str, ...] = Field(min_length=1)
    validate_: tuple[str, ...] = Field(alias="validate", min_length=1)

    @field_validator("develop", "validate_", mode="before")
    @classmethod
    def _text(cls, v):
        return tuple(str(x).strip().lower() for x in v) if isinstance(v, (list, tuple)) else v

    @model_validator(mode="after")
    def _disjoint(self) -> "ExternalConfig":
        both = set(self.develop) & set(self.validate_)
        if both:
            raise ValueError(f"benchmark.external: value(s) {sorted(both)} are in both develop and validate")
        return self


class HarmoniseConfig(_Model):
    """ComBat harmonisation of the features by a manifest ``batch`` column (site/scanner), fitted on each
    training fold only (and on the whole development cohort for the locked model)."""

    batch: str
    method: Literal["combat"] = "combat"


class BenchmarkConfig(_Model):
    classification: ClassificationTask | None = None
    survival: SurvivalTask | None = None
    clinical: tuple[str, ...] = ()  # manifest columns used as clinical covariates
    feature_sets: tuple[Literal["learned", "handcrafted", "combined", "volume", "voxel_pca", "clinical", "learned_pooled",
                                "anomaly", "random_encoder", "random_pooled"], ...] = (
        "learned",
        "handcrafted",
        "combined",
        "volume",
        "voxel_pca",
    )
    models: tuple[Literal["logistic_l1", "logistic_l2", "logistic_enet", "random_forest", "svm"], ...] = ("logistic_l2",)
    survival_models: tuple[Literal["cox_enet", "rsf"], ...] = ("cox_enet",)
    selection: Literal["none", "l1", "univariate", "mrmr"] = "univariate"
    max_features: int = Field(10, ge=1)
    correlation_threshold: float = Field(0.95, gt=0.0, le=1.0)
    cv: CVConfig = CVConfig()
    bootstrap: int = Field(1000, ge=0)  # patient-level bootstrap resamples for CIs (0 = none)
    adjust: Literal["holm", "bh"] = "holm"  # adjustment of the primary family (exploratory pairs: always BH)
    # the pre-specified comparison (set a vs set b); with the best learned-feature set vs b it forms the primary family
    primary: tuple[str, str] = ("learned", "handcrafted")
    # fold-mean intervals and paired tests: calibrated (K - 1 df; valid size at n = 34-150 in bench_type1), Nadeau-Bengio
    # (J - 1 df; anti-conservative there), or auto = calibrated below 100 patients, else Nadeau-Bengio
    interval: Literal["auto", "nadeau_bengio", "calibrated"] = "calibrated"
    permutations: int = Field(0, ge=0, le=10_000)  # patient-level label permutations of the whole nested CV (primary sets)
    shuffled_control: bool = True
    voxel_pca_components: int = Field(10, ge=1, le=256)
    voxel_grid_vox: int = Field(16, ge=4, le=64)  # ROI block-averaged to this many voxels per axis for voxel PCA
    redundancy: bool = True
    robustness: RobustnessConfig = RobustnessConfig()
    n_jobs: int = Field(1, ge=1, le=256)
    external: ExternalConfig | None = None  # develop on one cohort, validate locked models on another
    harmonise: HarmoniseConfig | None = None  # ComBat inside every fold pipeline
    # label efficiency (benchmark/label_efficiency.parquet): refit every set x model on stratified, seeded subsamples of
    # each outer training fold's labelled patients at these fractions, scored on the same test fold; () = off. Fractions
    # < 1 cost label_repeats draws x the first label_cv_repeats outer repeats each; 1.0 reuses the main CV's folds.
    label_fractions: tuple[float, ...] = ()
    label_repeats: int = Field(2, ge=1, le=50)
    label_cv_repeats: int = Field(1, ge=1, le=100)

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        bad = [f for f in v if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"label fraction {bad[0]} is not in (0, 1]")
        if len(set(v)) != len(v):
            raise ValueError("benchmark.label_fractions has a fraction twice")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _sets(self) -> "BenchmarkConfig":
        if "clinical" in self.feature_sets and not self.clinical:
            raise ValueError("feature set 'clinical' needs benchmark.clinical (manifest column names)")
        if not self.feature_sets:
            raise ValueError("benchmark.feature_sets is empty")
        if self.primary[0] == self.primary[1]:
            raise ValueError(f"benchmark.primary compares a set with itself ({self.primary[0]!r}); name two feature sets")
        return self


class ReportConfig(_Model):
    """The HTML report: built from the run folder only (rebuild with ``python -m radae.report runs/<name>``)."""

    title: str | None = None  # default: "radae report: <pipeline name>"
    max_rows: int = Field(50, ge=5, le=100_000)  # long tables (failures, per-feature lists) show this many rows


# ----------------------------------------------------------------------------- pipeline
class PipelineConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    runs_dir: Path = Path("runs")  # run folder is <runs_dir>/<name>; relative to the current directory
    seed: Seed = 0
    threads: int | None = Field(None, ge=1, le=1024)
    stages: tuple[Literal["ingest", "preprocess", "pretrain", "extract", "benchmark", "report"], ...] = STAGES
    data: DataConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    pretrain: PretrainConfig = PretrainConfig()
    extract: ExtractConfig = ExtractConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    report: ReportConfig = ReportConfig()
    source: Path | None = Field(None, exclude=True)  # the YAML file it came from (not part of hashes)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError("name must not be only dots (the run folder would be outside runs_dir)")
        return v

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    def section_hash(self, section: str) -> str:
        """sha256 of one section's canonical JSON (used for stage up-to-date checks); paths count by the content they
        name, not where they are (:mod:`radae.config.relocate`: a copied or moved run folder stays up to date)."""
        from radae.config.relocate import portable_section

        return stable_hash(portable_section(section, getattr(self, section).model_dump(mode="json")))

    def hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- loading
_PATH_KEYS = {("data", "manifest"), ("data", "npz", "path"), ("data", "root"), ("data", "evaluation_patients"), ("extract", "radiomics", "params"), ("preprocess", "cache_dir")}


def _expand(value: str) -> str:
    return value.replace("${RADAE_DATA}", str(data_root())).replace("$RADAE_DATA", str(data_root()))


def _resolve_paths(raw: dict, base: Path, source: Path) -> dict:
    for keys in _PATH_KEYS:
        node = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            try:
                if "\x00" in node[keys[-1]]:
                    raise ValueError("NUL character")
                p = Path(_expand(node[keys[-1]])).expanduser()
                node[keys[-1]] = str(p if p.is_absolute() else (base / p).resolve())
            except (ValueError, OSError, RuntimeError) as e:
                raise ConfigError(f"{source}: {'.'.join(keys)}: not a usable path ({e}) -> give a file path") from None
    return raw


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item!r}: empty key name in {key.strip()!r} -> write key.path=value, e.g. "
                              "--set preprocess.n_jobs=4")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = nxt
        try:
            node[parts[-1]] = load_bounded(value, f"--set {key}", "value")
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
            raise ConfigError(f"--set {key}: value {value!r} is not valid YAML ({str(e).splitlines()[0][:120]})") from None
    return raw


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    """One line: ``FILE: key.path: what is expected (got VALUE)`` per problem, joined by "; "."""
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(x) for x in e["loc"]) or "<top>"
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see README 'Pipeline YAML reference')"
        elif e["type"] == "missing" and e["loc"] and isinstance(e["loc"][-1], int):
            loc = ".".join(str(x) for x in e["loc"][:-1])
            msg = f"too few values (item {e['loc'][-1] + 1} is missing)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        got = e.get("input")
        got_s = ""
        if e["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) and "got" not in msg:
            got_s = f" (got {_short_repr(got)})"
        lines.append(f"{path}: {loc}: {msg}{got_s}")
    return "; ".join(lines)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 4, 60, 60


def _short_repr(value: Any) -> str:
    """Bounded repr: a YAML alias bomb in a wrong-typed value must not be expanded into the message."""
    return _REPR.repr(value)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_files: bool = True) -> PipelineConfig:
    """Read, validate and freeze a pipeline YAML. Raises ConfigError with file and key path."""
    from radae.config.lookup import find_pipeline, shipped_pipelines

    path = find_pipeline(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found (looked in {Path.cwd()} and {shipped_pipelines()})")
    try:
        raw = load_bounded(path.read_text(), path, "pipeline")  # safe: no Python tags; bounded: no alias bombs
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror}) -> check permissions") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as e:  # e.g. PyYAML on a date such as 2020-13-45
        raise ConfigError(f"{path}: not valid YAML: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    raw = _resolve_paths(raw, path.resolve().parent, path)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e)) from None
    except RecursionError:
        raise ConfigError(f"{path}: nesting too deep -> flatten the YAML") from None
    cfg = cfg.model_copy(update={"source": path.resolve()})
    if check_files:
        for label, p in (
            ("data.manifest", cfg.data.manifest),
            ("data.evaluation_patients", cfg.data.evaluation_patients),
            ("extract.radiomics.params", cfg.extract.radiomics.params),
        ):
            if p is not None and not Path(p).exists():
                raise ConfigError(f"{path}: {label}: file not found: {p}")
    return cfg
