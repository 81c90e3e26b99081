"""Issue 15, items 9-20 (and two bugs of issue 13): one bad case must not stop the cohort, and every refusal is one
clear line naming what to fix.

Whole-cohort crashes: ids that sort unlike their patients, missing files and symlink loops, an unsupported modality,
an alias bomb in the PyRadiomics file, pool workers that outlive a ``kill -9``. Unclear messages: float masks, an
override without a key, impossible seeds, NaN in the config, the file named on a full disk, Ctrl-C, a flipped mask.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from radae.cli import app
from radae.config import load_pipeline
from radae.util.errors import ConfigError, IngestError, RadaeError
from radae.util.fsutil import OutputWriteError, atomic_path, run_lock
from radae.preprocess.lesion import safe_preprocess_lesion
from radae.runner import run_pipeline

from .catalogue import IMAGE_KINDS, good_case, write_image
from .conftest import ROOT, TINY
from .test_catalogue import CFG, _run_kind, assert_message

PY = sys.executable


def _validate(path: Path, *overrides: str):
    args = ["validate", str(path)]
    for o in overrides:
        args += ["--set", o]
    return CliRunner().invoke(app, args)


def _pipeline(tmp_path: Path, rows: list[dict], stages=("ingest", "preprocess"), **sections) -> Path:
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"name": "c", "runs_dir": str(tmp_path / "runs"), "stages": list(stages), "data": {"manifest": "manifest.csv"},
           "preprocess": {**CFG.model_dump(mode="json"), "cache_dir": str(tmp_path / "cache")}, **sections}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path / "p.yaml"


def _failures(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "runs" / "c" / "failures.csv", keep_default_na=False)


# ----------------------------------------------------------------------------- 9 + 11: a cohort through extract
@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Case ids that sort opposite to their patient ids (A..D for P4..P1), plus one SPECT lesion, through extract."""
    tmp = tmp_path_factory.mktemp("ids")
    rows = []
    for i, case in enumerate("ABCDE"):
        row = good_case(tmp / "data", case, np.random.default_rng(i))
        row["patient_id"] = f"P{5 - i}"
        rows.append(row)
    rows[-1]["modality"] = "SPECT"
    t = {k: v for k, v in TINY.items() if k not in ("data", "benchmark")}
    t["pretrain"] = {**t["pretrain"], "val_fraction": 0.25, "allow_mixed_modalities": True}  # CT + SPECT
    path = _pipeline(tmp, rows, stages=("ingest", "preprocess", "pretrain", "extract"),
                     **{k: v for k, v in t.items() if k != "preprocess"})
    ctx = run_pipeline(load_pipeline(path), quiet=True)
    return tmp, path, ctx


@pytest.mark.slow
def test_case_ids_that_sort_unlike_patient_ids_are_extracted_in_table_order(extracted):
    tmp, _, ctx = extracted
    assert ctx.extra["ran"] == ["ingest", "preprocess", "pretrain", "extract"]
    ext = tmp / "runs" / "c" / "extract"
    for name in ("latent", "radiomics"):
        df = pd.read_parquet(ext / f"{name}.parquet")
        assert list(df["patient_id"]) == sorted(df["patient_id"]), name  # rows by (patient_id, case_id)
    assert list(pd.read_parquet(ext / "latent.parquet")["case_id"]) == ["E", "D", "C", "B", "A"]


@pytest.mark.slow
def test_an_unsupported_modality_is_one_failure_row_in_extract_not_a_dead_cohort(extracted):
    tmp, _, _ = extracted
    rad = pd.read_parquet(tmp / "runs" / "c" / "extract" / "radiomics.parquet")
    assert sorted(rad["case_id"]) == ["A", "B", "C", "D"]  # the SPECT lesion has latents but no PyRadiomics row
    f = _failures(tmp)
    row = f[(f["case_id"] == "E") & (f["stage"] == "extract")].iloc[0]
    assert "no PyRadiomics parameter file for modality 'SPECT'" in row["message"] and "extract.radiomics.params" in row["message"]


def test_validate_refuses_a_modality_without_a_parameter_file(tmp_path):
    row = good_case(tmp_path / "data", "S1", np.random.default_rng(0))
    row["modality"] = "SPECT"
    r = _validate(_pipeline(tmp_path, [row], stages=("ingest", "preprocess", "pretrain", "extract")))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "not modality 'SPECT' -> give a parameter file in extract.radiomics.params" in r.output


# ----------------------------------------------------------------------------- 10: missing files, symlink loops
def _cohort_with_bad_files(tmp_path: Path) -> tuple[list[dict], dict]:
    rows = [good_case(tmp_path / "data", f"good{i}", np.random.default_rng(i)) for i in range(2)]
    gone = good_case(tmp_path / "data", "gone", np.random.default_rng(5))
    gone["image"] = str(tmp_path / "data" / "deleted.nii.gz")
    loop = good_case(tmp_path / "data", "loop", np.random.default_rng(6))
    os.symlink(tmp_path / "data" / "loop_b.nii.gz", tmp_path / "data" / "loop_a.nii.gz")
    os.symlink(tmp_path / "data" / "loop_a.nii.gz", tmp_path / "data" / "loop_b.nii.gz")
    loop["mask"] = str(tmp_path / "data" / "loop_a.nii.gz")
    return rows + [gone, loop], {"gone": gone["image"], "loop": loop["mask"]}


def test_missing_files_and_symlink_loops_are_failure_rows_and_the_rest_runs(tmp_path):
    rows, bad = _cohort_with_bad_files(tmp_path)
    path = _pipeline(tmp_path, rows)
    assert _validate(path).exit_code == 2  # validate still says so
    ctx = run_pipeline(load_pipeline(path), quiet=True)
    assert ctx.extra["ran"] == ["ingest", "preprocess"]
    f = _failures(tmp_path).set_index("case_id")
    assert sorted(f.index) == ["gone", "loop"] and (f["stage"] == "ingest").all()
    assert f.loc["gone", "file"] == bad["gone"] and "image file not found" in f.loc["gone", "message"]
    assert f.loc["loop", "file"] == bad["loop"] and "symlink loop" in f.loc["loop", "message"]
    assert all(" -> " in m and "\n" not in m for m in f["message"])
    rois = pd.read_parquet(tmp_path / "runs" / "c" / "preprocess" / "rois.parquet")
    assert sorted(rois["case_id"]) == ["good0", "good1"]


def test_a_file_deleted_between_validate_and_run_is_a_failure_row(tmp_path):
    rows = [good_case(tmp_path / "data", f"c{i}", np.random.default_rng(i)) for i in range(3)]
    path = _pipeline(tmp_path, rows)
    assert _validate(path).exit_code == 0
    Path(rows[1]["image"]).unlink()
    run_pipeline(load_pipeline(path), quiet=True)
    f = _failures(tmp_path)
    assert list(f["case_id"]) == ["c1"] and f["file"][0] == rows[1]["image"]
    assert sorted(pd.read_parquet(tmp_path / "runs" / "c" / "preprocess" / "rois.parquet")["case_id"]) == ["c0", "c2"]


def test_missing_files_stop_the_run_with_on_error_raise_or_when_no_case_is_left(tmp_path):
    rows, _ = _cohort_with_bad_files(tmp_path)
    with pytest.raises(IngestError, match="image file not found"):
        run_pipeline(load_pipeline(_pipeline(tmp_path, rows, on_error="raise")), quiet=True)
    with pytest.raises(RadaeError, match="no row has its files"):
        run_pipeline(load_pipeline(_pipeline(tmp_path, rows[2:])), quiet=True)


# ----------------------------------------------------------------------------- 12: alias bomb in the parameter file
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "setting: {binWidth: 25}\n"


def test_an_alias_bomb_in_the_pyradiomics_parameter_file_is_refused_at_validate(tmp_path):
    from radae.features.handcrafted import read_params

    (tmp_path / "bomb.yaml").write_text(BOMB)
    with pytest.raises(ConfigError, match="expands to more than 100,000 YAML nodes"):
        read_params(tmp_path / "bomb.yaml")
    row = good_case(tmp_path / "data", "c0", np.random.default_rng(0))
    path = _pipeline(tmp_path, [row], stages=("ingest", "preprocess", "pretrain", "extract"),
                     extract={"radiomics": {"params": str(tmp_path / "bomb.yaml")}})
    r = _validate(path)
    assert r.exit_code == 2 and f"file {tmp_path / 'bomb.yaml'}: PyRadiomics parameter file expands" in r.output


# ----------------------------------------------------------------------------- 13: kill -9 with a process pool
def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")  # a zombie is dead (reparented orphans may wait to be reaped)


def test_preprocess_pool_workers_die_with_a_killed_parent_and_free_the_run_lock(tmp_path):
    """The preprocess stage's own pool (its initializer, forked workers) under a run lock; the parent is killed."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from radae.util.fsutil import run_lock
        from radae.preprocess import parallel as P
        init = getattr(P, "_init_worker", None)  # the preprocess pool's initializer (before issue 15: none of its own)
        with run_lock({str(tmp_path / 'run')!r}):
            with ProcessPoolExecutor(2, initializer=init, initargs=(os.getpid(),) if init else ()) as ex:
                futs = [ex.submit(time.sleep, 120) for _ in range(2)]
                time.sleep(1.0)
                print(" ".join(str(p) for p in ex._processes), flush=True)
                time.sleep(120)
    """)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.1)
    alive = [p for p in workers if pid_alive(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "pool workers outlived their killed parent"
    with run_lock(tmp_path / "run"):  # the resume is not refused
        pass


def test_a_run_lock_whose_holder_pid_is_dead_is_taken_over(tmp_path):
    """An orphaned process still holds the lock file's flock, but the pid written in it is dead."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    holder = subprocess.Popen([PY, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        fh = open({str(run_dir / '.lock')!r}, 'a+')
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0); fh.truncate(); fh.write('{dead.pid}'); fh.flush()
        print('locked', flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with run_lock(run_dir):
            assert (run_dir / ".lock").read_text() == str(os.getpid())
            with pytest.raises(RadaeError, match="another radae process is using it"):  # and it is ours now
                with run_lock(run_dir):
                    pass
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- 14, 20: masks
def test_a_float_mask_of_halves_says_it_holds_non_integer_values(tmp_path):
    kind = next(k for k in IMAGE_KINDS if k.name == "mask_float_half")  # also in the catalogue's cohort run
    row, (meta, msg, file) = _run_kind(tmp_path, kind)
    assert meta is None and file == row[kind.file]
    assert_message(msg, kind.name, row[kind.file], kind.problem, kind.advice)


def _asymmetric_mask() -> np.ndarray:
    m = np.zeros((16, 16, 16), np.uint8)
    m[5:10, 6:9, 2:7] = 1
    m[5:7, 6:8, 7:9] = 1
    return m


def test_a_mask_flipped_along_x_over_the_same_voxels_is_moved_onto_the_image_grid_and_recorded(tmp_path):
    rng = np.random.default_rng(0)
    ref = good_case(tmp_path / "ref", "ref", rng)
    m = _asymmetric_mask()
    ref["mask"] = write_image(m, tmp_path / "ref" / "m.nii.gz")
    flipped = dict(ref, case_id="flip")
    flipped["mask"] = write_image(m[:, :, ::-1].copy(), tmp_path / "flip.nii.gz", origin=(15.0, 0.0, 0.0),
                                  direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    a, msg_a, _ = safe_preprocess_lesion((ref, CFG, tmp_path / "cache", 0))
    b, msg_b, _ = safe_preprocess_lesion((flipped, CFG, tmp_path / "cache", 0))
    assert msg_a is None and msg_b is None, msg_b
    assert a["voxel_count"] == b["voxel_count"] == int(m.sum())
    assert sitk.GetArrayFromImage(sitk.ReadImage(b["radiomics_mask"])).tolist() == \
        sitk.GetArrayFromImage(sitk.ReadImage(a["radiomics_mask"])).tolist()
    assert a["warnings"] == "" and "resampled onto the image grid (nearest neighbour" in b["warnings"]
    # the same flip shifted by one voxel is not the same space: still refused
    shifted = dict(flipped, case_id="shift", mask=write_image(m[:, :, ::-1].copy(), tmp_path / "shift.nii.gz",
                                                                origin=(14.0, 0.0, 0.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1)))
    _, msg, _ = safe_preprocess_lesion((shifted, CFG, tmp_path / "cache", 0))
    assert "mask does not match image grid" in msg


# ----------------------------------------------------------------------------- 15-17: config
def _plain(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "p.yaml").write_text("name: c\ndata: {synth: {cases: 4}}\n" + extra)
    return tmp_path / "p.yaml"


def test_an_override_without_a_key_is_named(tmp_path):
    for bad in ("=5", "preprocess..n_jobs=2"):
        r = _validate(_plain(tmp_path), bad)
        assert r.exit_code == 2 and f"--set {bad!r}: empty key name" in r.output and " -> " in r.output, r.output
        assert "<top>" not in r.output


@pytest.mark.parametrize("seed, expected", [("-1", "greater than or equal to 0"), (str(2**32), "less than or equal to 4294967295"),
                                            ("1.0e+30", "seed")])
def test_impossible_seeds_are_refused_by_validate(tmp_path, seed, expected):
    r = _validate(_plain(tmp_path, f"seed: {seed}\n"))
    assert r.exit_code == 2 and f"{tmp_path / 'p.yaml'}: seed: " in r.output and expected in r.output, r.output


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_in_the_config_are_refused_at_load(tmp_path, value):
    with pytest.raises(ConfigError, match=r"preprocess\.normalise\.hu_min: Input should be a finite number"):
        load_pipeline(_plain(tmp_path, f"preprocess: {{normalise: {{hu_min: {value}}}}}\n"))


# ----------------------------------------------------------------------------- 18 + issue 13: full disk
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_full_disk_names_the_table_that_could_not_be_written_and_closes_its_files(tmp_path, monkeypatch):
    """pyarrow reports a full disk as an OSError without a file name; the writer being written names itself,
    even inside another writer (extract's lesion_provenance writer encloses the latent and radiomics ones)."""
    from radae.features.table import TableWriter

    real = pq.ParquetWriter.write_table

    def disk_full(self, table, **kw):
        if "inner.parquet" in str(self.where):
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real(self, table, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    cols = {"case_id": "text", "patient_id": "text", "x": "float"}
    before = _fds()
    with pytest.raises(OutputWriteError) as e:
        with TableWriter(tmp_path / "outer.parquet", cols) as outer:
            outer.write(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "x": [1.0]}))
            with TableWriter(tmp_path / "inner.parquet", cols) as inner:
                inner.write(pd.DataFrame({"case_id": ["a"], "patient_id": ["p"], "x": [1.0]}))
    msg = str(e.value)
    assert msg.startswith(f"file {tmp_path / 'inner.parquet'}: cannot write (No space left on device)"), msg
    assert _fds() == before  # every Parquet and CSV handle closed
    assert not list(tmp_path.iterdir())  # no table, no temp file


def test_a_copy_onto_a_full_disk_names_the_destination_not_the_source(tmp_path):
    """shutil.copyfile reports a full disk as OSError(ENOSPC, filename=source, filename2=destination) (its sendfile
    path); extract copies the shipped IBSI table that way, and the message named the shipped table."""
    src = tmp_path / "shipped.csv"
    src.write_text("a,b\n")
    with pytest.raises(OutputWriteError) as e:
        with atomic_path(tmp_path / "out" / "copy.csv") as tmp:
            shutil.copyfile(src, tmp)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(tmp))  # as shutil raises it
    assert str(e.value).startswith(f"file {tmp_path / 'out' / 'copy.csv'}: cannot write (No space left on device)"), str(e.value)


# ----------------------------------------------------------------------------- 19: Ctrl-C
@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])  # a second Ctrl-C during the first one's cleanup keeps the exit status
def test_sigint_marks_the_stage_interrupted_with_a_message(tmp_path, signals):
    from tests.tinyrun import DEMO, tiny_overrides

    cmd = [PY, "-m", "radae.cli", "run", str(DEMO), "-q", "--stages", "ingest,preprocess,pretrain"]
    for o in tiny_overrides(tmp_path / "runs", cases=8, steps=100000) + ["pretrain.checkpoint_every=100000"]:
        cmd += ["--set", o]
    # a background job of a non-interactive shell ignores SIGINT, and its children inherit that: give the run the
    # default disposition, as an interactive terminal would (then Python turns SIGINT into KeyboardInterrupt)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stage = tmp_path / "runs" / "demo" / "pretrain" / "_stage.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not stage.exists():
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    if signals == 2:
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    meta = json.loads(stage.read_text())
    assert meta["status"] == "interrupted" and "stage pretrain interrupted after" in meta["message"]
    assert "radae: interrupted: stage pretrain interrupted" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- issue 13: manifest scan
def test_manifest_scan_refuses_an_unreadable_patient_id(tmp_path, dicom_factory, monkeypatch):
    import pydicom

    from radae.util.errors import ManifestError
    from radae.data.scan import scan_rows

    arr = np.random.default_rng(1).integers(-200, 200, (6, 16, 16)).astype(np.int16)
    slices = dicom_factory.write_ct_series(tmp_path / "PAT1" / "ct", arr)
    dicom_factory.write_rtstruct(tmp_path / "PAT1" / "rs.dcm", slices,
                                 {"GTV": [(2, [(5.0, 5.0), (10.0, 5.0), (10.0, 10.0), (5.0, 10.0)])]})
    assert len(scan_rows(tmp_path)) == 1
    real = pydicom.dcmread

    def unreadable_patient(path, *a, **kw):  # the PatientID read of the scan fails, as on a damaged header
        if kw.get("specific_tags") == ["PatientID"]:
            raise pydicom.errors.InvalidDicomError("damaged")
        return real(path, *a, **kw)

    monkeypatch.setattr(pydicom, "dcmread", unreadable_patient)
    with pytest.raises(ManifestError, match="cannot read its PatientID"):
        scan_rows(tmp_path)


def test_every_catalogued_defect_names_a_test_of_this_module():
    from .catalogue import ISSUE15_B_KINDS

    here = globals()
    assert len({k.name for k in ISSUE15_B_KINDS}) == len(ISSUE15_B_KINDS) == 19
    for k in ISSUE15_B_KINDS:
        assert callable(here.get(k.test)), k
        assert k.was in ("silently wrong", "crash", "unclear message")
