"""What a run was made with: versions, git commit, device, threads (for provenance and `radae info`)."""
from __future__ import annotations

import functools
import importlib.metadata as md
import os
import platform
import subprocess
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
    """An installed distribution's version (None if absent), looked up once per process (each look-up scans sys.path)."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


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
