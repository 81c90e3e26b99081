"""The report built from a tiny real run folder, a partial one, an empty one and a damaged one."""
from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from typer.testing import CliRunner

from radae.cli import app
from radae.report.build import build_report
from radae.report.keys import lookup


class _Keys(HTMLParser):
    """Collect (data-key, text) pairs and <img> sources from the page."""

    def __init__(self):
        super().__init__()
        self.keys, self.imgs, self._open = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if "data-key" in a:
            self._open = [a["data-key"], ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == "span":
            self.keys.append(tuple(self._open))
            self._open = None


def parse(html_path):
    p = _Keys()
    p.feed(html_path.read_text())
    return p


def test_numbers_match_the_run_folder(tiny_run):
    summary = json.loads((tiny_run / "report" / "summary.json").read_text())["numbers"]
    cases = pd.read_parquet(tiny_run / "ingest" / "cases.parquet")
    rois = pd.read_parquet(tiny_run / "preprocess" / "rois.parquet")
    assert lookup(summary, "data.lesions") == len(cases)
    assert lookup(summary, "data.patients") == cases["patient_id"].nunique()
    assert lookup(summary, "data.volume_ml.median") == float(f"{np.median(rois['lesion_volume_ml']):.3g}")
    labelled = cases.drop_duplicates("patient_id")["label"].astype(float)
    assert lookup(summary, "data.outcome.positives") == int((labelled == 1).sum())
    assert lookup(summary, "data.outcome.labelled_patients") == int(labelled.notna().sum())


def test_page_states_exactly_the_summary_numbers(tiny_run):
    page = parse(tiny_run / "report" / "report.html")
    summary = json.loads((tiny_run / "report" / "summary.json").read_text())["numbers"]
    assert page.keys
    for key, text in page.keys:
        v = lookup(summary, key)
        assert (text == "n/a") if v is None else float(text) == v, (key, text, v)
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    html = (tiny_run / "report" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//)""", html), "report must not load anything from the network"


@pytest.mark.slow  # over 10 s: a subprocess run or a whole tiny pipeline
def test_rebuild_is_byte_identical_and_needs_only_the_run_folder(tiny_run, tmp_path, capsys):
    copy = tmp_path / "copied_run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache"))
    res = CliRunner().invoke(app, ["report", str(copy)])
    assert res.exit_code == 0 and "report.html" in res.output, res.output
    a = build_report(copy, tmp_path / "a")
    b = build_report(copy, tmp_path / "b")
    assert (tmp_path / "a" / "report.html").read_bytes() == (tmp_path / "b" / "report.html").read_bytes()
    assert a.summary == b.summary
    assert (copy / "report" / "summary.json").read_text() == (tmp_path / "a" / "summary.json").read_text()


def test_partial_run_says_what_is_missing(make_tiny_run, tmp_path):
    run_dir = make_tiny_run(tmp_path / "runs", stages=["ingest"])
    res = build_report(run_dir, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "preprocess/rois.parquet" in res.missing and "benchmark/summary.json" in res.missing
    assert "Not available: pretraining results" in html
    assert "lesion_volume" not in json.dumps(res.summary)
    assert lookup(res.summary["numbers"], "data.lesions") > 0
    assert not any(k.startswith(("benchmark", "robustness", "latent")) for k in res.summary["numbers"])


def test_empty_folder_builds_a_page_that_says_so(tmp_path):
    res = build_report(tmp_path / "nothing_here", tmp_path / "out")
    html = res.html_path.read_text()
    assert "Not available: the cohort description" in html
    assert res.summary["numbers"] == {}
    res = CliRunner().invoke(app, ["report", str(tmp_path / "no_such_run")])
    assert res.exit_code == 2 and "run folder" in res.output and "not found" in res.output, res.output


def test_damaged_input_is_reported_not_fatal(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("report", "cache"))
    (copy / "preprocess" / "rois.parquet").write_bytes(b"not parquet")
    (copy / "environment.json").write_text("{broken")
    res = build_report(copy)
    assert res.missing["preprocess/rois.parquet"].startswith("unreadable")
    assert res.missing["environment.json"].startswith("unreadable")
    html = res.html_path.read_text()
    assert "preprocess/rois.parquet is unreadable" in html


def test_primary_comparison_leads_and_exploratory_pairs_are_collapsed(tiny_run):
    html = (tiny_run / "report" / "report.html").read_text()
    bsum = json.loads((tiny_run / "benchmark" / "summary.json").read_text())
    summary_part = html[html.index('<section id="summary">'):]
    summary_part = summary_part[: summary_part.index("</section>")]
    assert "<strong>Primary comparison</strong> (classification, AUC; family of" in summary_part
    assert 'alt="forest plot, classification"' in summary_part and 'alt="forest plot, survival"' in summary_part
    pair = bsum["classification"]["primary"]["pairs"][0]
    numbers = json.loads((tiny_run / "report" / "summary.json").read_text())["numbers"]
    assert lookup(numbers, f"primary.classification.{pair['set_a']}__vs__{pair['set_b']}.diff") == float(f"{pair['diff']:+.3f}")
    # all other pairs behind a <details> toggle
    assert "<details><summary>Exploratory comparisons: all other pairs" in html
    assert "Numbers at risk (patients)" in html
    assert "Permutation test: not run (benchmark.permutations is 0)" in summary_part


def test_numbers_at_risk_counts_from_the_km_table():
    from radae.report.forest import numbers_at_risk

    km = pd.DataFrame({"feature_set": "learned", "model": "cox", "group": "high", "time": [0.0, 2.0, 5.0, 9.0],
                       "at_risk": [10.0, 10.0, 6.0, 2.0]})
    cols, rows = numbers_at_risk(km, [0.0, 3.0, 9.0, 12.0])
    assert cols[2:] == ["t = 0", "t = 3", "t = 9", "t = 12"]
    assert rows == [["learned / cox", "high risk", 10, 6, 2, 0]]
