"""Serial, process pool and Dask run the same per-lesion function and give identical results."""
from __future__ import annotations

import numpy as np
import pytest

from radae.util.errors import ExtractError
from radae.features import handcrafted as hc
from radae.features.parallel import map_tasks

from .conftest import lesion_arrays, write_nifti


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lesions")
    rng = np.random.default_rng(7)
    tasks = []
    for i in range(4):
        img, mask = lesion_arrays(rng, (10, 12, 12))
        tasks.append(hc.LesionTask(f"L{i}", f"P{i}", "CT", write_nifti(img, folder / f"i{i}.nii.gz", (1.5, 1.5, 1.5)),
                                   write_nifti(mask, folder / f"m{i}.nii.gz", (1.5, 1.5, 1.5))))
    specs = {"CT": hc.build_spec({"setting": {"binWidth": 25}, "imageType": {"Original": {}}}, grid="resampled")}
    serial = {r["case_id"]: r for r in map_tasks(hc.run_lesion, tasks, specs, executor="serial")}
    return tasks, specs, serial


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for case in a:
        assert a[case]["error"] is None and b[case]["error"] is None
        assert a[case]["features"] == b[case]["features"]  # exact: same code, same inputs
        assert a[case]["input_sha256"] == b[case]["input_sha256"]


def test_process_pool_matches_serial(lesions):
    tasks, specs, serial = lesions
    pooled = {r["case_id"]: r for r in map_tasks(hc.run_lesion, tasks, specs, executor="process", n_jobs=2)}
    _same(serial, pooled)


def test_dask_local_cluster_threads_matches_serial(lesions):
    tasks, specs, serial = lesions
    res = {r["case_id"]: r for r in map_tasks(hc.run_lesion, tasks, specs, executor="dask", n_jobs=2, dask_processes=False)}
    _same(serial, res)


def test_dask_local_cluster_processes_matches_serial(lesions):
    tasks, specs, serial = lesions
    res = {r["case_id"]: r for r in map_tasks(hc.run_lesion, tasks, specs, executor="dask", n_jobs=2, dask_processes=True)}
    _same(serial, res)


def test_unreachable_scheduler_is_one_line_error(lesions, monkeypatch):
    import radae.features.parallel as par

    monkeypatch.setattr(par, "DASK_CONNECT_TIMEOUT_S", 1)
    tasks, specs, _ = lesions
    with pytest.raises(ExtractError, match="cannot reach the Dask scheduler"):
        list(map_tasks(hc.run_lesion, tasks, specs, executor="dask", dask_address="tcp://127.0.0.1:1"))


def test_unknown_executor():
    with pytest.raises(ExtractError, match="executor"):
        map_tasks(abs, [1], executor="threads")


def test_dask_batches_cover_every_task_once_and_keep_workers_busy():
    from radae.features.parallel import DASK_BATCH_MAX, dask_batches

    for n, workers in ((1, 2), (7, 2), (320, 2), (10_000, 8), (50, 64)):
        batches = dask_batches(list(range(n)), workers)
        assert [t for b in batches for t in b] == list(range(n))
        assert max(map(len, batches)) <= DASK_BATCH_MAX
        assert len(batches) >= min(n, 4 * workers)  # at least 4 Dask tasks per worker while there are lesions


def _profiler_setting(task, shared):
    import dask

    return dask.config.get("distributed.worker.profile.enabled")


def test_local_dask_cluster_workers_run_without_the_sampling_profiler():
    from radae.features.parallel import map_tasks

    seen = list(map_tasks(_profiler_setting, list(range(4)), executor="dask", n_jobs=2, dask_processes=True, quiet=True))
    assert seen == [False] * 4
