"""Whole-file checks of inputs that readers would otherwise accept silently: gzip CRC and non-orthogonal axes.

- :func:`nifti_problem`: :func:`radae.io.nifti.nifti_payload_problem` (truncation, bad header, NaN voxels,
  and, for ``.nii.gz``, the whole compressed stream read to its end so gzip checks its CRC-32 and length: one
  flipped bit is a CRC error that ITK ignores). The verdict is memoised by the file's content sha256
  (:func:`radae.util.hashing.file_sha256`, itself memoised by path, size and mtime), so each file is verified once
  per process however many stages or checks read it.
- :func:`radae.io.nifti.direction_problem`: a direction matrix whose axes are not orthonormal (sheared, scaled) is
  not a rotation; resampling would write it as one and move the voxels.
- :func:`manifest_file_problems`: both checks' file-level part for every NIfTI image/mask of a manifest, for
  ``radae validate`` (which must refuse what ``radae run`` would).
"""
from __future__ import annotations

import threading
from pathlib import Path

from radae.io.nifti import nifti_payload_problem
from radae.util.hashing import file_sha256

_VERDICTS: dict[str, tuple[str, str] | None] = {}
_LOCK = threading.Lock()


def is_nifti(path: str | Path) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def nifti_problem(path: str | Path) -> tuple[str, str] | None:
    """``(kind, text)`` for a damaged NIfTI file (see :func:`radae.io.nifti.nifti_payload_problem`), or None."""
    try:
        digest = file_sha256(path)
    except OSError:
        return nifti_payload_problem(path)
    with _LOCK:
        if digest in _VERDICTS:
            return _VERDICTS[digest]
    verdict = nifti_payload_problem(path)
    with _LOCK:
        _VERDICTS[digest] = verdict
    return verdict




def manifest_file_problems(df) -> list[str]:
    """One line per damaged NIfTI image or mask of a validated manifest (the ``image``/``mask`` columns)."""
    out, seen = [], set()
    for row in df.to_dict("records"):
        for col in ("image", "mask"):
            p = row.get(col)
            if not isinstance(p, str) or not p or p in seen or not is_nifti(p) or not Path(p).is_file():
                continue
            seen.add(p)
            found = nifti_problem(p)
            if found is not None and found[0] != "nonfinite":
                out.append(f"case {row.get('case_id')}: file {p}: cannot read {col}: {found[1]} -> copy or export the file again")
            elif found is not None:
                out.append(f"case {row.get('case_id')}: file {p}: {col} has {found[1]} -> fix or mask them before running radae")
    return out
