"""``radae features --manifest``: PyRadiomics starts on the lesions before the table libraries are loaded.

The command spends most of its fixed cost importing pandas, pyarrow and pydantic, validating the manifest and
writing the run header; the lesions need none of that. :func:`start` reads the manifest CSV with the ``csv`` module,
validates the PyRadiomics parameters once and forks the ``--jobs`` worker processes, which begin on the lesions at
once while the parent does ingest. The extract code then takes each result whose lesion turned out identical
(:meth:`Prefetch.results`): same case, patient, modality, files, label, series, content hashes and validated
settings (spec key). A lesion that differs in any of these, or failed, is run again the usual way, so the outputs are
byte for byte those of a run without prefetching.

Best effort and Linux only (``fork``, before torch): a Parquet manifest, a ``--model``, a work folder with saved
lesions (a resumed run) or any problem reading the manifest simply means no prefetch; the real checks report it.
"""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

#: the task fields that must be equal for a prefetched result to stand for the real lesion
_SAME = ("case_id", "patient_id", "modality", "image", "mask", "mask_label", "series_uid")


def work_folder(out: Path) -> Path:
    """The work folder of ``radae features --out OUT``: ``<out stem>_radae/`` beside OUT."""
    return Path(out).resolve().parent / f"{Path(out).stem}_radae"


def _text(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _path(value: str, base: Path) -> str:
    """A manifest path as ingest resolves it (relative to the manifest's folder, ``${RADAE_DATA}`` expanded)."""
    if not value:
        return ""
    if "$RADAE_DATA" in value or "${RADAE_DATA}" in value:
        from radae.config import data_root

        value = value.replace("${RADAE_DATA}", str(data_root())).replace("$RADAE_DATA", str(data_root()))
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def read_tasks(manifest: Path) -> list:
    """One :class:`~radae.features.handcrafted.LesionTask` per row of a CSV manifest, read without pandas (no hashes)."""
    from radae.features.handcrafted import LesionTask

    base = Path(manifest).resolve().parent
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return [LesionTask(case_id=_text(r.get("case_id")), patient_id=_text(r.get("patient_id")),
                       modality=_text(r.get("modality")).upper(), image=_path(_text(r.get("image")), base),
                       mask=_path(_text(r.get("mask")), base), mask_label=_text(r.get("mask_label")),
                       series_uid=_text(r.get("series_uid"))) for r in rows]


class Prefetch:
    """Worker processes already running PyRadiomics on the manifest's lesions, one future per case id."""

    def __init__(self, executor, futures: dict, tasks: dict, specs: dict):
        self._executor, self._futures, self._tasks, self._specs = executor, futures, tasks, specs
        self.started = time.perf_counter()  # the workers' start: what the extract summary's seconds count from

    def _usable(self, task, specs: dict):
        """The prefetched result for ``task`` (with its resume key), or None when it does not stand for it."""
        mine, fut = self._tasks.get(task.case_id), self._futures.pop(task.case_id, None)
        mod = task.modality
        if fut is None or mine is None or any(getattr(mine, k) != getattr(task, k) for k in _SAME):
            return None
        if mod not in specs or mod not in self._specs or specs[mod].key != self._specs[mod].key:
            return None
        try:
            res = fut.result()
        except Exception:  # noqa: BLE001 - a worker that died: the lesion is run again the usual way
            return None
        got = res.get("input_sha256") or {}
        if res["error"] or got.get("image") != task.image_sha256 or got.get("mask") != (task.mask_sha256 or got.get("mask")):
            return None
        return {**res, "key": task.key}

    def results(self, todo: list, specs: dict, run_rest: Callable[[list], Iterator[dict]]) -> Iterator[dict]:
        """A result for every task of ``todo``: prefetched where usable, the others from ``run_rest(tasks)``."""
        rest = []
        for task in todo:
            res = self._usable(task, specs)
            if res is None:
                rest.append(task)
            else:
                yield res
        self.close(wait=False)  # the workers exit while the tables are written
        logger.debug("extract: %d of %d lesions from the prefetch workers", len(todo) - len(rest), len(todo))
        if rest:
            yield from run_rest(rest)

    def close(self, wait: bool = True) -> None:
        """Stop the workers (lesions not started are dropped; running ones finish); ``wait``: until they have exited."""
        self._futures.clear()
        self._executor.shutdown(wait=wait, cancel_futures=True)


def start(manifest: Path, out: Path, *, params: Path | None, image_types, jobs: int) -> Prefetch | None:
    """Fork ``jobs`` workers on the lesions of a CSV ``manifest`` now; None where prefetching does not apply.

    Not with ``jobs == 1``: one job means one busy process (the parent's start-up would otherwise run beside the
    worker on a second core, which a one-core comparison must not get for free)."""
    from radae.features import parallel

    if jobs < 2:
        return None

    partial = work_folder(out) / "extract" / "partial" / "radiomics"
    if Path(manifest).suffix.lower() != ".csv" or parallel.start_method() != "fork" or any(partial.glob("*.json")):
        return None
    try:
        tasks = read_tasks(manifest)
        specs = _specs({t.modality for t in tasks}, params, image_types)
    except Exception as e:  # noqa: BLE001 - best effort: ingest and extract report every real problem
        logger.debug("extract: no prefetch (%s: %s)", type(e).__name__, e)
        return None
    tasks = [t for t in tasks if t.modality in specs and t.case_id]
    if not tasks or len({t.case_id for t in tasks}) != len(tasks):
        return None
    from radae.features.handcrafted import run_lesion

    ex, futures = parallel.submit_all(run_lesion, tasks, specs, jobs, "fork")
    return Prefetch(ex, {t.case_id: f for t, f in zip(tasks, futures)}, {t.case_id: t for t in tasks}, specs)


def _specs(modalities: set[str], params: Path | None, image_types) -> dict:
    """The specs the extract stage will build (``grid: original`` on the native grid), for the modalities it can."""
    from radae.features import handcrafted as hc

    types = list(image_types) if image_types else (None if params else ["Original"])
    known = {m for m in modalities if params is not None or m in hc.MODALITY_PARAMS}
    quiet = logging.getLogger("pykwalify.core")  # a rejected file's error lines: once, when extract checks it for real
    was, quiet.disabled = quiet.disabled, True
    try:
        return hc.specs_for_modalities(sorted(known), params_path=None if params is None else Path(params).resolve(),
                                       grid="original", image_types=types, spacing_mm=None)
    finally:
        quiet.disabled = was
