"""The ROI cache through the runner: hit on unchanged input, miss on exactly what changed (file content or config)."""
import json
import os

import numpy as np
import pandas as pd
import yaml

from radae.config import load_pipeline
from radae.runner import run_pipeline

from .conftest import lesion_scan, write_case, write_manifest, write_nifti


def _pipeline(tmp_path, **preprocess):
    doc = {"name": "c", "runs_dir": str(tmp_path / "runs"), "stages": ["ingest", "preprocess"],
           "data": {"manifest": "manifest.csv"},
           "preprocess": {"spacing_mm": [1.5, 1.5, 1.5], "roi_size_vox": [8, 8, 8], "patches": {"per_volume": 1}, **preprocess}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(yaml_path, **kw):
    ctx = run_pipeline(load_pipeline(yaml_path), **kw)
    d = ctx.run_dir / "preprocess"
    summary = json.loads((d / "summary.json").read_text())
    keys = pd.read_parquet(d / "rois.parquet").set_index("case_id")["preprocess_key"].to_dict()
    return ctx, summary, keys


def test_cache_hits_unchanged_input_and_misses_exactly_what_changed(tmp_path):
    rng = np.random.default_rng(0)
    rows = [write_case(tmp_path / "data", cid, rng, shape_zyx=(12, 14, 16), center_zyx=(6, 7, 8), radius_vox=3)
            for cid in ("A_1", "B_1", "C_1")]
    write_manifest(rows, tmp_path / "manifest.csv")
    p = _pipeline(tmp_path)

    ctx, s, keys0 = _run(p)
    assert (s["ok"], s["cache_hits"]) == (3, 0) and ctx.extra["ran"] == ["ingest", "preprocess"]

    ctx, s, keys = _run(p, force=True)  # unchanged input: everything from the cache
    assert (s["ok"], s["cache_hits"]) == (3, 3) and keys == keys0

    os.utime(rows[1]["image"], (1, 1))  # a new mtime with the same bytes changes nothing
    ctx, _, _ = _run(p)
    assert ctx.extra.get("ran") is None and ctx.extra["skipped"] == ["ingest", "preprocess"]

    img, _ = lesion_scan(np.random.default_rng(99), shape_zyx=(12, 14, 16), center_zyx=(6, 7, 8), radius_vox=3)
    write_nifti(img, tmp_path / "data" / "B_1_img.nii.gz")  # new content for one case only
    ctx, s, keys = _run(p)
    assert ctx.extra["ran"] == ["ingest", "preprocess"]
    assert s["cache_hits"] == 2
    assert keys["A_1"] == keys0["A_1"] and keys["C_1"] == keys0["C_1"] and keys["B_1"] != keys0["B_1"]

    # a setting that is not part of the cache key re-runs the stage, all from the cache
    ctx, s, keys_jobs = _run(_pipeline(tmp_path, n_jobs=2))
    assert ctx.extra["ran"] == ["preprocess"] and s["cache_hits"] == 3 and keys_jobs == keys

    # a preprocessing setting that changes the voxels: every lesion misses
    ctx, s, keys_sp = _run(_pipeline(tmp_path, spacing_mm=[1.0, 1.0, 1.0]))
    assert ctx.extra["ran"] == ["preprocess"] and s["cache_hits"] == 0
    assert not set(keys_sp.values()) & set(keys.values())


def test_a_deleted_cache_entry_is_rebuilt_not_trusted(tmp_path):
    rows = [write_case(tmp_path / "data", "A_1", np.random.default_rng(1), shape_zyx=(12, 14, 16), center_zyx=(6, 7, 8))]
    write_manifest(rows, tmp_path / "manifest.csv")
    p = _pipeline(tmp_path)
    _, _, keys = _run(p)
    roi = pd.read_parquet(tmp_path / "runs" / "c" / "preprocess" / "rois.parquet")["roi_path"].iloc[0]
    before = open(roi, "rb").read()
    os.remove(roi)
    _, s, _ = _run(p, force=True)
    assert s["cache_hits"] == 0 and open(roi, "rb").read() == before
