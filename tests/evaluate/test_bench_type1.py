"""A small run of benchmarks/bench_type1.py: radae's own CV under a null of two equally strong feature sets."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_type1  # noqa: E402

LINE = re.compile(r"^(type1|reference): test=(\S+) n=(\d+) rate=([0-9.]+) ci=([0-9.]+),([0-9.]+)|^coverage: interval=(\S+) n=(\d+) rate=([0-9.]+)$")


@pytest.mark.slow
def test_small_null_simulation_prints_every_test_and_interval(capsys, tmp_path):
    out = tmp_path / "t1.json"
    bench_type1.main(["--n", "24", "--sims", "2", "--folds", "3", "--repeats", "2", "--inner-folds", "2",
                      "--truth-fits", "1", "--json", str(out)])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if LINE.match(ln)]
    tests = {m.group(2) for ln in lines if (m := LINE.match(ln)) and m.group(1) == "type1"}
    intervals = {m.group(7) for ln in lines if (m := LINE.match(ln)) and m.group(7)}
    assert tests == {"nadeau_bengio", "calibrated", "auto"}
    assert intervals == {"nadeau_bengio", "calibrated", "auto", "diff_nadeau_bengio", "diff_calibrated", "diff_auto"}
    assert any(ln.startswith("reference: test=delong_oof") for ln in lines)
    r = __import__("json").loads(out.read_text())["results"][0]
    # same centre, wider quantile: the calibrated interval covers whenever Nadeau-Bengio does
    assert r["coverage"]["calibrated"]["rate"] >= r["coverage"]["nadeau_bengio"]["rate"]
    assert r["type1"]["calibrated"]["rate"] <= r["type1"]["nadeau_bengio"]["rate"]
    assert r["type1"]["auto"]["method"] == "calibrated"  # 24 patients < 100
    assert 0.5 < r["true_auc"] < 0.9


def test_analyse_counts_rejections_and_coverage():
    """Hand-made fold AUCs: one clear difference (rejected), one null (kept), truth inside / outside."""
    sims = [{"auc_a": np.array([0.9, 0.92, 0.88, 0.91, 0.9, 0.89]), "auc_b": np.array([0.61, 0.6, 0.6, 0.6, 0.58, 0.6]),
             "n_train": 20.0, "n_test": 10.0, "delong_p": 0.01},
            {"auc_a": np.array([0.7, 0.72, 0.68, 0.71, 0.7, 0.69]), "auc_b": np.array([0.71, 0.69, 0.7, 0.7, 0.72, 0.68]),
             "n_train": 20.0, "n_test": 10.0, "delong_p": 0.5}]
    r = bench_type1.analyse(30, sims, truth=0.7, folds=3)
    assert r["type1"]["calibrated"]["rate"] == 0.5
    assert r["reference_delong_oof"]["rate"] == 0.5
    # AUC intervals: both sets of sim 0 (0.9, 0.6) miss 0.7, both of sim 1 contain it
    assert r["coverage"]["calibrated"]["rate"] == 0.5
    assert r["coverage"]["diff_calibrated"]["rate"] == 0.5
