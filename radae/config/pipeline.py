"""``report:`` and the whole pipeline (:class:`PipelineConfig`): one frozen model per stage section."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from radae.config.base import STAGES, Seed, _Model, stable_hash
from radae.config.benchmark import BenchmarkConfig
from radae.config.data import DataConfig
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
