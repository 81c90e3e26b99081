"""The report's outcome columns come from BenchmarkConfig.outcome_roles (the one reading), also for a bad config."""
import yaml

from radae.config.benchmark import BenchmarkConfig
from radae.report.artifacts import RunFolder
from radae.report.blocks import Note
from radae.report.keys import KeyNumbers
from radae.report.sections.context import Context, outcome_spec
from radae.report.sections.data import data_section


def _ctx(run_dir, benchmark) -> Context:
    return Context(run=RunFolder(run_dir), keys=KeyNumbers(), cfg={"benchmark": benchmark})


def test_outcome_roles_are_the_outcome_columns_by_role():
    b = BenchmarkConfig.model_validate({"classification": {"label": "y"}, "survival": {"time": "t", "event": "e"}})
    assert b.outcome_roles() == {"label": "y", "time": "t", "event": "e"} and b.outcome_columns() == ["y", "t", "e"]
    s = BenchmarkConfig.model_validate({"survival": {"time": "t", "event": "e"}})
    assert s.outcome_roles() == {"label": None, "time": "t", "event": "e"} and s.outcome_columns() == ["t", "e"]
    assert BenchmarkConfig().outcome_roles() == {"label": None, "time": None, "event": None}


def test_report_reads_the_outcomes_through_the_config(tmp_path):
    ctx = _ctx(tmp_path, {"classification": {"label": "y"}, "survival": {"time": "t", "event": "e"}})
    assert outcome_spec(ctx) == {"label": "y", "time": "t", "event": "e"} and ctx.run.notes == {}
    assert outcome_spec(Context(run=RunFolder(tmp_path), keys=KeyNumbers(), cfg={})) == {"label": None, "time": None, "event": None}


def test_a_benchmark_section_that_does_not_validate_is_a_note_not_a_crash(tiny_run):
    bench = yaml.safe_load((tiny_run / "config.resolved.yaml").read_text())["benchmark"]
    bench["survival"] = {"time": "os_time", "events": "os_event"}  # a misspelt key
    ctx = _ctx(tiny_run, bench)
    notes = [b.text for b in data_section(ctx).blocks if isinstance(b, Note)]
    why = "unreadable as benchmark config (benchmark.survival.event: Field required)"
    assert ctx.run.notes["config.resolved.yaml"] == why
    assert f"Not available: outcomes — config.resolved.yaml is {why}." in notes
