"""``data:`` — where the cohort comes from (manifest, MedMNIST-style arrays, the synthetic cohort)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from radae.config.base import Seed, _Model


# ----------------------------------------------------------------------------- data / ingest
#: the values of ``data.cohort_column`` that ingest writes with ``data.validation_manifest``: the development cohort's
#: rows (data.manifest, or the synthetic / imported cohort), then the validation manifest's rows
COHORTS = ("development", "validation")


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
    # a second cohort's own manifest (same columns and checks; relative to the YAML file): its patients become evaluation
    # patients (never pretrained on) and the benchmark's external validation cohort; ingest adds `cohort_column`
    # ("development" for data.manifest's rows / the synthetic or imported cohort, "validation" for these)
    validation_manifest: Path | None = None
    cohort_column: str = Field("cohort", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # without evaluation_patients: hold this seeded fraction of the labelled patients out of pretraining (they become
    # the evaluation patients); None = no hold-out (pretraining then sees every benchmarked patient; the report warns)
    holdout_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    pseudonymise_patients: bool = False  # replace patient_id by a keyed hash (key: env RADAE_PSEUDO_KEY)

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if sum(x is not None for x in (self.manifest, self.synth, self.npz)) != 1:
            raise ValueError("give exactly one of data.manifest, data.synth or data.npz")
        if self.cohort_column in ("case_id", "patient_id", "image", "mask", "modality", "is_evaluation"):
            raise ValueError(f"data.cohort_column: {self.cohort_column!r} is a column radae fills itself -> name another, e.g. cohort")
        return self
