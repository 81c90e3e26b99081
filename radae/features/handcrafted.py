"""Handcrafted features: PyRadiomics' own ``RadiomicsFeatureExtractor``, configured from a PyRadiomics parameter file.

Feature names stay PyRadiomics' own (``original_glcm_Contrast``, ``wavelet-LLH_firstorder_Mean``). ``diagnostics_*``
entries never reach the feature table; a few (PyRadiomics' image/mask hashes, spacing, voxel counts) go to provenance.

Where PyRadiomics runs (``extract.radiomics.grid``):

- ``resampled``: on the lesion crop that preprocess wrote (``radiomics_image`` / ``radiomics_mask`` in rois.parquet:
  raw intensities on radae's resampled grid, the same grid the autoencoder saw). PyRadiomics must not resample again,
  so a parameter file that sets ``resampledPixelSpacing`` is refused here.
- ``original``: on the original image and mask (``ingest/cases.parquet``, read with :func:`radae.io.read_image` /
  :func:`radae.io.read_mask`, so DICOM series, RTSTRUCT and SEG work), with PyRadiomics' own resampling to
  ``preprocess.spacing_mm`` (or the file's ``resampledPixelSpacing``) and its own interpolator.

The parameter file is read and validated once, in the parent process (:func:`build_spec`); workers receive the
validated dict and build their extractor once (:func:`get_extractor`, cached per thread), never per lesion.
:func:`run_lesion` is the one per-lesion function for the serial loop, the process pool and Dask: it returns a plain
dict and turns every expected problem (unreadable file, empty mask, PyRadiomics refusing the ROI) into an error
message for ``failures.csv`` instead of an exception.
"""
from __future__ import annotations

import copy
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from radae.features.pyradiomics_call import extract_volumes
from radae.util.errors import ConfigError, ExtractError, RadaeError, case_message
from radae.util.hashing import file_sha256, stable_hash
from radae.util.yamlsafe import load_bounded

logger = logging.getLogger(__name__)

#: modality (as in the manifest) -> shipped parameter file in radae/params/
MODALITY_PARAMS = {"CT": "ct.yaml", "MR": "mr.yaml", "MRI": "mr.yaml", "PT": "pet.yaml", "PET": "pet.yaml"}
#: filter settings used when extract.radiomics.image_types asks for a type the parameter file does not configure
DEFAULT_IMAGE_TYPE_ARGS: dict[str, dict] = {"Original": {}, "LoG": {"sigma": [1.0, 2.0, 3.0]}, "Wavelet": {}}
GRIDS = ("resampled", "original")


def pyradiomics_version() -> str:
    """The installed PyRadiomics version ("3.0.1"; PyRadiomics itself reports "v3.0.1")."""
    import radiomics

    return str(radiomics.__version__).lstrip("v")


# ----------------------------------------------------------------------------- parameter files
def shipped_params_path(modality: str) -> Path:
    """The parameter file radae ships for ``modality`` (CT, MR, PT/PET); ConfigError for any other."""
    name = MODALITY_PARAMS.get(str(modality).upper())
    if name is None:
        raise ConfigError(f"extract.radiomics.params: radae ships PyRadiomics parameter files for CT, MR and PET only, "
                          f"not modality {modality!r} -> give a parameter file in extract.radiomics.params, or leave the "
                          "modality out with data.modalities")
    return Path(str(resources.files("radae") / "params" / name))


def read_params(path: str | Path) -> dict:
    """Read a PyRadiomics parameter file (YAML or JSON) into a dict; ConfigError naming the file if it is not one."""
    path = Path(path)
    try:
        raw = load_bounded(path.read_text(), f"file {path}", "PyRadiomics parameter file")
    except OSError as e:
        raise ConfigError(f"file {path}: cannot read PyRadiomics parameter file ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"file {path}:{where} PyRadiomics parameter file is not valid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"file {path}: PyRadiomics parameter file is not a text file") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as e:
        raise ConfigError(f"file {path}: PyRadiomics parameter file is not valid YAML ({type(e).__name__})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"file {path}: a PyRadiomics parameter file is a mapping (imageType, featureClass, setting), "
                          f"got {type(raw).__name__}")
    return raw


@dataclass(frozen=True)
class RadiomicsSpec:
    """A validated PyRadiomics configuration: what every worker needs to build its extractor.

    ``params`` is the complete parameter dict handed to ``RadiomicsFeatureExtractor`` (after radae's overrides);
    ``key`` hashes it together with the PyRadiomics version (part of every lesion's resume key).
    """

    params: dict
    source: str  # file it came from (or "<dict>")
    source_sha256: str
    grid: str
    key: str = field(default="")

    @property
    def image_types(self) -> list[str]:
        return list(self.params.get("imageType") or {"Original": {}})

    @property
    def settings(self) -> dict:
        return dict(self.params.get("setting") or {})


def _section(params: dict, name: str) -> dict:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"PyRadiomics parameters: section {name!r} must be a mapping, got {type(value).__name__}")
    return value


def build_spec(
    params: dict,
    *,
    source: str = "<dict>",
    source_sha256: str = "",
    grid: str = "resampled",
    image_types: tuple[str, ...] | list[str] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
) -> RadiomicsSpec:
    """Apply radae's overrides to a parameter dict and validate it with PyRadiomics itself.

    - ``label`` is always 1 (radae's masks are 0/1);
    - ``image_types`` (if given) keeps only those image types, with the file's filter settings where it has them and
      :data:`DEFAULT_IMAGE_TYPE_ARGS` otherwise;
    - ``grid="resampled"`` refuses ``resampledPixelSpacing`` (the crop is already resampled); ``grid="original"``
      sets it to ``spacing_mm`` unless the file gives one (``None`` and no file value: no resampling at all).
    """
    if grid not in GRIDS:
        raise ConfigError(f"extract.radiomics.grid: expected one of {GRIDS}, got {grid!r}")
    params = copy.deepcopy(params)
    unknown = sorted(set(params) - {"imageType", "featureClass", "setting", "voxelSetting"})
    if unknown:
        raise ConfigError(f"file {source}: unknown PyRadiomics parameter section(s) {unknown} "
                          "-> use imageType, featureClass, setting (and voxelSetting)")
    setting = _section(params, "setting")
    file_types = _section(params, "imageType")
    if image_types is not None:
        file_types = {t: (file_types[t] if file_types.get(t) is not None else copy.deepcopy(DEFAULT_IMAGE_TYPE_ARGS.get(t, {})))
                      for t in image_types}
        if not file_types:
            raise ConfigError("extract.radiomics.image_types is empty -> list at least Original")
    params["imageType"] = {t: (v if v is not None else {}) for t, v in file_types.items()} or {"Original": {}}
    setting["label"] = 1
    if grid == "resampled":
        if setting.get("resampledPixelSpacing") is not None:
            raise ConfigError(f"file {source}: setting.resampledPixelSpacing is set, but extract.radiomics.grid is "
                              "'resampled' (the lesion crop is already on radae's grid) -> remove it, or use grid: original")
        setting.pop("resampledPixelSpacing", None)
    elif setting.get("resampledPixelSpacing") is None and spacing_mm is not None:
        setting["resampledPixelSpacing"] = [float(s) for s in spacing_mm]
    params["setting"] = setting
    if not params.get("featureClass"):
        # PyRadiomics would enable every class, shape2D included, which fails (or warns) without force2D
        from radiomics import getFeatureClasses

        params["featureClass"] = {c: None for c in getFeatureClasses() if c != "shape2D" or setting.get("force2D")}
    key = stable_hash({"params": params, "pyradiomics": pyradiomics_version(), "grid": grid})
    cache = _thread_cache()  # the serial path reuses the validated extractor (one build, not two)
    if key not in cache:  # the same dict validated before in this thread (radae features' prefetch) is not again
        cache[key] = _validate(params, source)
    return RadiomicsSpec(params=params, source=str(source), source_sha256=source_sha256, grid=grid, key=key)


def _validate(params: dict, source: str):
    from radae.features.paramcache import build_extractor

    try:
        with _BUILD_LOCK:
            _quiet_pyradiomics()
            return build_extractor(copy.deepcopy(params))
    except Exception as e:  # pykwalify SchemaError / CoreError, PyRadiomics ValueError: all mean "bad parameters"
        first = " ".join(str(e).split())[:300] or type(e).__name__
        raise ConfigError(f"file {source}: PyRadiomics rejected the parameters ({first}) "
                          "-> see https://pyradiomics.readthedocs.io/en/latest/customization.html") from None


def spec_from_file(path: str | Path, *, grid: str, image_types=None, spacing_mm=None) -> RadiomicsSpec:
    path = Path(path)
    return build_spec(read_params(path), source=str(path), source_sha256=file_sha256(path), grid=grid,
                      image_types=image_types, spacing_mm=spacing_mm)


def specs_for_modalities(modalities, *, params_path: str | Path | None, grid: str, image_types=None,
                         spacing_mm=None, strict: bool = False) -> dict[str, RadiomicsSpec]:
    """One spec per modality present: the configured file for all, or the shipped file of each modality.

    A modality radae ships no file for (e.g. SPECT, with no ``params_path``) raises ConfigError when ``strict``
    (``radae validate``); otherwise it is left out with a warning, and its lesions become failures.csv rows in
    extract (:func:`run_lesion`) instead of stopping the cohort.
    """
    out: dict[str, RadiomicsSpec] = {}
    for mod in sorted({str(m) for m in modalities}):
        if params_path is None and str(mod).upper() not in MODALITY_PARAMS and not strict:
            logger.warning("extract: no PyRadiomics parameter file for modality %r (radae ships CT, MR and PET); its "
                           "lesions get no PyRadiomics features -> give extract.radiomics.params", mod)
            continue
        path = Path(params_path) if params_path is not None else shipped_params_path(mod)
        out[mod] = spec_from_file(path, grid=grid, image_types=image_types, spacing_mm=spacing_mm)
    return out


# ----------------------------------------------------------------------------- extractor per worker
_LOCAL = threading.local()
_BUILD_LOCK = threading.Lock()


def _thread_cache() -> dict:
    cache = getattr(_LOCAL, "extractors", None)
    if cache is None:
        cache = _LOCAL.extractors = {}
    return cache


def get_extractor(spec: RadiomicsSpec):
    """This thread's ``RadiomicsFeatureExtractor`` for ``spec``, built on first use (once per worker, not per lesion)."""
    cache = _thread_cache()
    ex = cache.get(spec.key)
    if ex is None:
        from radae.features.paramcache import build_extractor

        with _BUILD_LOCK:  # PyRadiomics parses its schema with ruamel.yaml, which is not thread-safe
            _quiet_pyradiomics()
            ex = build_extractor(copy.deepcopy(spec.params))
        cache[spec.key] = ex
        logger.debug("built PyRadiomics extractor %s in thread %s", spec.key[:12], threading.get_ident())
    return ex


class _DropNote(logging.Filter):
    """Drops PyRadiomics' per-lesion note that SumAverage = 2 x JointAverage (printed once per lesion otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("GLCM is symmetrical")


def _quiet_pyradiomics() -> None:
    """Keep PyRadiomics' per-lesion chatter out of radae's log: its INFO lines (a dozen per lesion) and the
    SumAverage note. Its warnings and errors still show. Called when an extractor is built, never on import."""
    for name in ("radiomics", "pykwalify"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    glcm_logger = logging.getLogger("radiomics.glcm")
    if not any(isinstance(f, _DropNote) for f in glcm_logger.filters):
        glcm_logger.addFilter(_DropNote())


# ----------------------------------------------------------------------------- one lesion
@dataclass(frozen=True)
class LesionTask:
    """Everything a worker needs for one lesion (plain values: pickles cheaply to processes and Dask)."""

    case_id: str
    patient_id: str
    modality: str
    image: str
    mask: str
    mask_label: str = ""
    series_uid: str = ""
    image_sha256: str = ""  # known content hashes (original grid: from ingest); "" -> hashed by the worker
    mask_sha256: str = ""
    key: str = ""  # resume key: spec + inputs


def _load(task: LesionTask):
    from radae.io import read_image, read_mask

    if not task.mask:
        raise ExtractError(case_message(task.case_id, task.image, "no lesion mask (seed-point case)",
                                        "PyRadiomics needs a segmentation; give a mask or disable extract.radiomics"))
    image = read_image(task.image, series_uid=task.series_uid or None, case_id=task.case_id)
    try:
        mask = read_mask(task.mask, task.mask_label or None, image, image_path=task.image, case_id=task.case_id)
    except RadaeError as e:
        raise _Blame(str(e), task.mask) from None
    return image, mask


class _Blame(Exception):
    """Carries the file to blame next to the message."""

    def __init__(self, message: str, file: str):
        super().__init__(message)
        self.file = file


def run_lesion(task: LesionTask, specs: dict[str, RadiomicsSpec]) -> dict:
    """Extract one lesion; never raises for a problem with the lesion (the message goes to failures.csv).

    Returns ``{"case_id", "key", "features" (dict or None), "diagnostics", "input_sha256", "nan_features",
    "error" (None or one-line message), "file", "seconds"}``.
    """
    t0 = time.perf_counter()
    out = {"case_id": task.case_id, "key": task.key, "features": None, "diagnostics": {}, "input_sha256": {},
           "nan_features": [], "error": None, "file": None, "seconds": 0.0}
    file = task.image
    try:
        spec = specs.get(task.modality)
        if spec is None:
            raise ExtractError(case_message(task.case_id, None, f"no PyRadiomics parameter file for modality {task.modality!r} "
                                            "(radae ships CT, MR and PET)", "give one in extract.radiomics.params, or leave "
                                            "the modality out with data.modalities"))
        image, mask = _load(task)
        out["input_sha256"] = {"image": task.image_sha256 or file_sha256(task.image),
                               "mask": task.mask_sha256 or file_sha256(task.mask)}
        file = task.mask
        feats, diag = extract_volumes(get_extractor(spec), image, mask)
        if not feats:
            raise ExtractError(case_message(task.case_id, task.image, "PyRadiomics returned no features",
                                            "check featureClass and imageType in the parameter file"))
        out["features"], out["diagnostics"] = feats, diag
        out["nan_features"] = sorted(k for k, v in feats.items() if not math.isfinite(v))
    except _Blame as e:
        out["error"], out["file"] = str(e), e.file
    except RadaeError as e:
        out["error"], out["file"] = str(e), file
    except Exception as e:  # noqa: BLE001 - one odd lesion must not stop a cohort; the message names the error type
        # PyRadiomics signals unusable ROIs with ValueError ("mask only contains 1 segmented voxel", ...)
        text = " ".join(str(e).split())[:240] or type(e).__name__
        out["error"] = case_message(task.case_id, file, f"PyRadiomics failed: {type(e).__name__}: {text}",
                                    "check the mask (size, label) and the parameter file")
        out["file"] = file
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- robustness hook
def lesion_features_from_roi_row(row: dict, spec: RadiomicsSpec) -> dict[str, float]:
    """Features of one preprocess index row's radiomics crop (in this process); raises ExtractError on failure."""
    task = LesionTask(case_id=str(row["case_id"]), patient_id=str(row.get("patient_id", "")), modality="_",
                      image=str(row.get("radiomics_image") or ""), mask=str(row.get("radiomics_mask") or ""),
                      image_sha256="-", mask_sha256="-")
    res = run_lesion(task, {"_": spec})
    if res["error"]:
        raise ExtractError(res["error"])
    return res["features"]
