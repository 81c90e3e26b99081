"""What a run was made with: versions, git commit, device, threads (for provenance and `radae info`)."""
from __future__ import annotations

import functools
import importlib.metadata as md
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

#: every installed package whose version can change a result (features, folds, models, statistics, tables), in
#: ``radae info`` and each run's environment.json; optional ones (umap-learn) are listed when present
PACKAGES = ("radae", "torch", "monai", "SimpleITK", "pyradiomics", "PyWavelets", "numpy", "scipy", "pandas", "pyarrow",
            "scikit-learn", "scikit-survival", "lifelines", "joblib", "pydantic", "PyYAML", "pydicom", "highdicom",
            "opencv-python", "opencv-python-headless", "nibabel", "dask", "distributed", "matplotlib",
            "umap-learn")
#: listed only when installed (not dependencies of radae)
OPTIONAL = ("umap-learn", "opencv-python", "opencv-python-headless", "nibabel")


def package_versions(names=PACKAGES, optional=OPTIONAL) -> dict[str, str | None]:
    """``{name: installed version}`` for ``names``, in that order; None if not installed (left out if ``optional``)."""
    out = {}
    for name in names:
        version = _version(name)
        if version is not None or name not in optional:
            out[name] = version
    return out


@functools.lru_cache(maxsize=None)
def _version(name: str) -> str | None:
    """An installed distribution's version (None if absent), looked up once per process: from the name of its
    ``<name>-<version>.dist-info`` folder (one listing of the sys.path folders serves every name) where there is
    one, else from its metadata (each such look-up scans sys.path and parses a METADATA file)."""
    versions, others, complete = _metadata_folders()
    key = _normalised(name)
    if key not in others:  # with an .egg-info too, importlib.metadata decides which comes first
        if key in versions:
            return versions[key]
        if complete:
            return None  # no metadata folder of that name anywhere on sys.path: not installed
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@functools.lru_cache(maxsize=None)
def _metadata_folders() -> tuple[dict[str, str], set[str], bool]:
    """(``{normalised name: version}`` of the first ``.dist-info`` folder of each name along sys.path, the one
    ``importlib.metadata`` finds first; names with other metadata (``.egg-info``, odd folder names); whether every
    sys.path entry was a folder that could be listed or is absent)."""
    versions: dict[str, str] = {}
    others: set[str] = set()
    complete = True
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except FileNotFoundError:
            continue
        except OSError:  # a zip file on sys.path, an unreadable folder
            complete = False
            continue
        for folder in names:
            stem, dot, kind = folder.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            dist, _, version = stem.partition("-")
            if kind == "dist-info" and version and "-" not in version:
                versions.setdefault(_normalised(dist), version)
            else:
                others.add(_normalised(dist))
    return versions, others, complete


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info() -> dict:
    import torch

    info = {"torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def environment_info(device: bool = True) -> dict:
    """``device=False`` leaves out ``device`` (torch's threads and GPUs), so that torch is not imported."""
    info = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "git_commit": git_commit(),
    }
    if device:
        info["device"] = device_info()
    return info
