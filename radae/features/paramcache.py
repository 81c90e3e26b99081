"""PyRadiomics extractors whose parameters passed PyRadiomics' own schema check before are built without repeating it.

``RadiomicsFeatureExtractor(params)`` checks ``params`` with pykwalify against PyRadiomics' schema; parsing that
schema (ruamel.yaml) is ~70 ms of every fresh process, on the start-up of ``radae features`` before the first lesion.
The check's outcome depends only on the parameter dict, the PyRadiomics version and its schema files, so a dict that
passed is remembered by a hash of those (an empty file in ``$XDG_CACHE_HOME/radae/pyradiomics-params/``, default
``~/.cache``); building from a remembered dict hands PyRadiomics the same dict without the pykwalify pass (its
``validate()`` returns the source data unchanged). A dict that fails is never remembered, so every bad parameter
file is still refused by PyRadiomics itself; a cache folder that cannot be written only means the check runs again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()  # PyRadiomics parses its schema with ruamel.yaml (not thread-safe); the stand-in is global


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "radae" / "pyradiomics-params"


def _key(params: dict) -> str:
    import radiomics

    h = hashlib.sha256(json.dumps({"params": params, "pyradiomics": str(radiomics.__version__)}, sort_keys=True,
                                  default=str).encode())
    for f in radiomics.getParameterValidationFiles():  # the schema and its check functions
        h.update(Path(f).read_bytes())
    return h.hexdigest()


class _Checked:
    """Stands in for ``pykwalify.core.Core`` for a remembered dict: ``validate()`` returns the data, as pykwalify does."""

    def __init__(self, source_data=None, **_ignored):
        self._data = source_data

    def validate(self, raise_exception: bool = True):
        return self._data


def build_extractor(params: dict):
    """``RadiomicsFeatureExtractor(params)``; the schema check is skipped for a dict that passed it before."""
    import pykwalify.core
    from radiomics import featureextractor

    try:
        key = _key(params)
        known = (cache_dir() / key).is_file()
    except OSError:
        key, known = None, False
    with _LOCK:
        if not known:
            ex = featureextractor.RadiomicsFeatureExtractor(params)
        else:
            core, pykwalify.core.Core = pykwalify.core.Core, _Checked
            try:
                ex = featureextractor.RadiomicsFeatureExtractor(params)
            finally:
                pykwalify.core.Core = core
    if key is not None and not known:
        try:
            cache_dir().mkdir(parents=True, exist_ok=True)
            (cache_dir() / key).touch()
        except OSError as e:  # a read-only home: the check simply runs again next time
            logger.debug("PyRadiomics parameter cache not written (%s)", e)
    return ex
