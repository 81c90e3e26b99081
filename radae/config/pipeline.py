"""``report:`` and the whole pipeline (:class:`PipelineConfig`): one frozen model per stage section."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from radae.config.base import STAGES, Seed, _Model, stable_hash
from radae.config.benchmark import BenchmarkConfig, ExternalConfig
from radae.config.data import COHORTS, DataConfig
from radae.config.extract import ExtractConfig
from radae.config.preprocess import PreprocessConfig
from radae.config.pretrain import PretrainConfig


class ReportConfig(_Model):
    """The HTML report: built from the run folder only (rebuild with ``radae report runs/<name>``)."""

    title: str | None = None  # default: "radae report: <pipeline name>"
    max_rows: int = Field(50, ge=5, le=100_000)  # long tables (failures, per-feature lists) show this many rows




# ----------------------------------------------------------------------------- pipeline
class PipelineConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    runs_dir: Path = Path("runs")  # run folder is <runs_dir>/<name>; relative to the current directory
    seed: Seed = 0
    threads: int | None = Field(None, ge=1, le=1024)
    # a case that cannot be read or processed: `skip` = a failures.csv row and the cohort goes on; `raise` = stop the run
    on_error: Literal["skip", "raise"] = "skip"
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

    @model_validator(mode="after")
    def _validation_cohort(self) -> "PipelineConfig":
        """A second manifest is the external validation cohort: without ``benchmark.external`` the benchmark develops on
        ``data.cohort_column == "development"`` and validates on ``"validation"``. Left alone, the benchmark would keep
        only the evaluation patients and pool both cohorts in one CV, which is never what a second manifest means."""
        d = self.data
        if d.validation_manifest is None:
            return self
        ext = self.benchmark.external
        if ext is None:
            ext = ExternalConfig(column=d.cohort_column, develop=(COHORTS[0],), validate=(COHORTS[1],))
            object.__setattr__(self, "benchmark", self.benchmark.model_copy(update={"external": ext}))  # frozen: set once here
        elif ext.column == d.cohort_column and not set(ext.develop + ext.validate_) <= set(COHORTS):
            raise ValueError(f"benchmark.external: column {ext.column!r} holds only {list(COHORTS)} with data.validation_manifest "
                             f"(got {list(ext.develop)} / {list(ext.validate_)}) -> leave benchmark.external out or use those values")
        return self

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
