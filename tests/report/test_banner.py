"""The red banner: unconverged encoder, or learned features no better than their shuffled-label control."""
from __future__ import annotations

import json

from radae.report.build import build_report

NO_SIGNAL = "learned features carry no detectable signal in this run"


def _metric(mean, lo, hi):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n_folds": 10}


def _run(tmp_path, learned_auc, control_auc, converged=True, pooled_auc=None):
    run = tmp_path / "run"
    (run / "benchmark").mkdir(parents=True)
    (run / "pretrain").mkdir()
    results = {"learned": {"logistic_l2": {"auc": _metric(*learned_auc)}},
               "handcrafted": {"logistic_l2": {"auc": _metric(0.9, 0.8, 1.0)}}}
    control = {"learned": {"logistic_l2": {"auc": _metric(control_auc, control_auc - 0.2, control_auc + 0.2)}}}
    if pooled_auc is not None:
        results["learned_pooled"] = {"logistic_l2": {"auc": _metric(*pooled_auc)}}
        control["learned_pooled"] = {"logistic_l2": {"auc": _metric(0.5, 0.3, 0.7)}}
    (run / "benchmark" / "summary.json").write_text(json.dumps(
        {"classification": {"label": "label", "results": results, "shuffled_control": control}}))
    (run / "pretrain" / "diagnostics.json").write_text(json.dumps({
        "items": 5, "split": "val", "levels": {}, "denoise_gain_db_at_highest": -1.0,
        "convergence": {"converged": converged, "reasons": [] if converged else ["validation loss still falling (-30 %)"],
                        "rule": "r"}}))
    return build_report(run).html_path.read_text()


def test_banner_when_learned_equals_its_shuffled_control(tmp_path):
    html = _run(tmp_path, (0.63, 0.43, 0.83), 0.63)
    assert 'class="banner"' in html and NO_SIGNAL in html


def test_no_banner_when_learned_beats_its_control_and_the_encoder_converged(tmp_path):
    html = _run(tmp_path, (0.85, 0.72, 0.98), 0.52)
    assert 'class="banner"' not in html


def test_banner_for_an_unconverged_encoder(tmp_path):
    html = _run(tmp_path, (0.85, 0.72, 0.98), 0.52, converged=False)
    assert "The encoder did not converge" in html and NO_SIGNAL not in html


def test_pooled_head_beating_its_control_softens_the_message(tmp_path):
    html = _run(tmp_path, (0.6, 0.4, 0.8), 0.6, pooled_auc=(0.9, 0.8, 1.0))
    assert NO_SIGNAL not in html and "the bottleneck code (learned) does not beat its shuffled-label control" in html


def test_pretraining_effect_table_orients_learned_minus_random(tmp_path):
    import pandas as pd

    run = tmp_path / "run"
    (run / "benchmark").mkdir(parents=True)
    pd.DataFrame([
        {"task": "classification", "model": "logistic_l2", "metric": "auc", "set_a": "random_encoder", "set_b": "learned",
         "diff": -0.12, "ci_low": -0.2, "ci_high": -0.04, "p_adjusted": 0.01, "role": "exploratory"},
        {"task": "classification", "model": "logistic_l2", "metric": "auc", "set_a": "learned", "set_b": "handcrafted",
         "diff": -0.05, "ci_low": -0.15, "ci_high": 0.05, "p_adjusted": 0.4, "role": "primary"},
    ]).to_csv(run / "benchmark" / "comparisons.csv", index=False)
    (run / "benchmark" / "summary.json").write_text(json.dumps({"cohort": "all", "unit": "patient"}))
    html = build_report(run).html_path.read_text()
    assert "Does pretraining add anything?" in html
    assert "+0.120" in html and "[+0.040, +0.200]" in html  # learned − random_encoder, sign flipped
    assert "-0.050" in html
