"""radae.features.prefetch: results of lesions started before ingest are used only where the lesion is unchanged.

Run in a fresh process: prefetching forks, which the test process (torch loaded) must not do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import dataclasses, json, sys
from pathlib import Path
from radae.features import handcrafted as hc, prefetch
from radae.util.hashing import file_sha256

manifest, out = Path(sys.argv[1]), Path(sys.argv[2])
pre = prefetch.start(manifest, out, params=None, image_types=None, jobs=2)
specs = prefetch._specs({"CT"}, None, None)
real = [dataclasses.replace(t, image_sha256=file_sha256(t.image), mask_sha256=file_sha256(t.mask), key=f"k{i}")
        for i, t in enumerate(prefetch.read_tasks(manifest))]
real[1] = dataclasses.replace(real[1], mask_label="2")  # ingest would have changed this row: not the prefetched lesion
real[2] = dataclasses.replace(real[2], image_sha256="0" * 64)  # the file changed after the workers read it
rest = []
def run_rest(tasks):
    rest.extend(t.case_id for t in tasks)
    return (hc.run_lesion(t, specs) for t in tasks)
got = {r["case_id"]: r for r in pre.results(real, specs, run_rest)}
ref = {t.case_id: hc.run_lesion(t, specs) for t in real}
print(json.dumps({"rest": rest, "ids": [t.case_id for t in real], "keys": {c: r["key"] for c, r in got.items()},
                  "same": all(got[c]["features"] == ref[c]["features"] for c in got if ref[c]["features"]),
                  "errors": {c: r["error"] for c, r in got.items()}}))
"""


def test_prefetch_uses_only_unchanged_lesions(tmp_path):
    from radae.data.synth import generate_cohort

    generate_cohort(tmp_path / "syn", cases=4, seed=0, size_vox=24, unlabeled=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RADAE_START_METHOD": "fork"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "syn" / "manifest.csv"), str(tmp_path / "f.csv")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ids = res["ids"]
    assert len(ids) >= 4 and res["rest"] == [ids[1], ids[2]]
    assert res["keys"] == {c: f"k{i}" for i, c in enumerate(ids)}  # every result carries the real task's resume key
    assert res["same"] is True  # the changed rows were run again as they are now (label 2: the patient's other lesion)
    assert res["errors"] == {c: None for c in ids}


def test_no_prefetch_for_a_resumed_work_folder_or_parquet_manifest(tmp_path, monkeypatch):
    from radae.features import prefetch

    monkeypatch.setenv("RADAE_START_METHOD", "fork")  # the checks come before any fork

    (tmp_path / "m.parquet").write_bytes(b"")
    assert prefetch.start(tmp_path / "m.parquet", tmp_path / "f.csv", params=None, image_types=None, jobs=2) is None
    partial = prefetch.work_folder(tmp_path / "f.csv") / "extract" / "partial" / "radiomics"
    partial.mkdir(parents=True)
    (partial / "A-0.json").write_text("{}")
    (tmp_path / "m.csv").write_text("case_id,patient_id,image,mask,modality\n")
    assert prefetch.start(tmp_path / "m.csv", tmp_path / "f.csv", params=None, image_types=None, jobs=2) is None
