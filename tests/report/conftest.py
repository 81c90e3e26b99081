"""Fixtures over the tiny demo-like run of tests/tinyrun.py, shared by the report tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import tinyrun
from tests.tinyrun import DEMO, ROOT, build_tiny_run, runnable_stages, tiny_overrides  # noqa: F401


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    os.environ.setdefault("RADAE_QUIET", "1")
    return build_tiny_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def make_tiny_run():
    """The builder itself, for tests that need their own (e.g. partial) run."""
    return build_tiny_run


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(runs_dir, *extra_overrides)`` -> the validated tiny demo PipelineConfig."""
    return tinyrun.tiny_config
