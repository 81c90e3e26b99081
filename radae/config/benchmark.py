"""``benchmark:`` — tasks, nested CV, statistics, robustness, external validation, harmonisation."""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from radae.config.base import Seed, _Model


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
    # the sets also evaluated with the clinical covariates added (clinical+<set>); None = every set but clinical/voxel_pca
    clinical_with: tuple[str, ...] | None = None
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
        for name in self.clinical_with or ():
            if name not in self.feature_sets or name in ("clinical", "voxel_pca"):
                raise ValueError(f"benchmark.clinical_with names {name!r}, which is not one of benchmark.feature_sets (clinical and "
                                 "voxel_pca excluded)")
        if self.clinical_with and "clinical" not in self.feature_sets:
            raise ValueError("benchmark.clinical_with needs the feature set 'clinical' in benchmark.feature_sets")
        if self.primary[0] == self.primary[1]:
            raise ValueError(f"benchmark.primary compares a set with itself ({self.primary[0]!r}); name two feature sets")
        return self

    def outcome_roles(self) -> dict[str, str | None]:
        """The outcome columns by role: ``label`` (classification), ``time`` and ``event`` (survival); None when that task
        is not configured. The one reading of the outcome columns (the manifest check, the cohort and the report use it)."""
        cls, surv = self.classification, self.survival
        return {"label": cls.label if cls else None, "time": surv.time if surv else None, "event": surv.event if surv else None}

    def outcome_columns(self) -> list[str]:
        """The manifest columns that are outcomes: the classification label, then survival time and event."""
        return [c for c in self.outcome_roles().values() if c]
