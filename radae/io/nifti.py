"""NIfTI files that ITK would read silently wrong: header and payload checks (truncation, voxel size, shear, NaN).

:func:`nifti_payload_problem` is the uncached check; :func:`radae.io.integrity.nifti_problem` caches it by content.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

#: largest |D^T D - I| entry accepted for a direction matrix (same tolerance as image/mask direction checks)
ORTHO_ATOL = 1e-3


def fmt_values(values, nd: int = 4) -> str:
    """(1.0, 2.5, 3.0) for messages (plain floats, never numpy reprs)."""
    return "(" + ", ".join(f"{round(float(v), nd) + 0.0:g}" for v in values) + ")"


SHEAR_HINT = ("radae needs an orthogonal voxel grid; resample the volume onto one (e.g. with 3D Slicer or SimpleITK) "
              "and fix the header")

# NIfTI datatype codes of floating-point voxels -> numpy dtype (little endian; byte-swapped when needed)
_NIFTI_FLOAT = {16: "f4", 64: "f8"}


def direction_problem(direction) -> str | None:
    """Why a 3x3 row-major direction matrix is not a rotation/reflection (axes not unit length or not at right
    angles), or None."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    eye = np.eye(3)
    # np.allclose(gram, eye, atol=ORTHO_ATOL) written out: it is called for every file read, and allclose is slow
    if not np.all(np.isfinite(d)) or not np.all(np.abs(d.T @ d - eye) <= ORTHO_ATOL + 1e-5 * eye):
        cols = [d[:, i] for i in range(3)]
        angles = [float(np.degrees(np.arccos(np.clip(cols[a] @ cols[b] / max(np.linalg.norm(cols[a]) * np.linalg.norm(cols[b]), 1e-12), -1, 1))))
                  for a, b in ((0, 1), (0, 2), (1, 2))]
        return ("direction cosines are not orthonormal (sheared or scaled axes; angles between axes "
                f"{', '.join(f'{a:.2f}' for a in angles)} degrees, lengths "
                f"{', '.join(f'{np.linalg.norm(c):.3f}' for c in cols)})")
    return None



def nifti_header(head: bytes) -> dict | None:
    """The fields radae checks from a NIfTI-1/2 single-file header (``n+1``/``n+2``), or None if not one."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] == b"n+1":
            dim = struct.unpack(endian + "8h", head[40:56])
            return {"endian": endian, "dim": dim, "datatype": struct.unpack(endian + "h", head[70:72])[0],
                    "bitpix": struct.unpack(endian + "h", head[72:74])[0], "pixdim": struct.unpack(endian + "8f", head[76:108]),
                    "vox_offset": int(struct.unpack(endian + "f", head[108:112])[0]),
                    "scl": struct.unpack(endian + "2f", head[112:120]), "version": 1,
                    "sform_code": struct.unpack(endian + "h", head[254:256])[0],
                    "srow": struct.unpack(endian + "12f", head[280:328])}
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] == b"n+2":
            return {"endian": endian, "dim": struct.unpack(endian + "8q", head[16:80]),
                    "datatype": struct.unpack(endian + "h", head[12:14])[0], "bitpix": struct.unpack(endian + "h", head[14:16])[0],
                    "pixdim": struct.unpack(endian + "8d", head[104:168]), "vox_offset": struct.unpack(endian + "q", head[168:176])[0],
                    "sform_code": struct.unpack(endian + "i", head[348:352])[0], "srow": struct.unpack(endian + "12d", head[400:496])}
    return None


def _sform_problem(hdr: dict) -> str | None:
    """Why the header's sform (when in use) is not a rotation times voxel sizes: ITK would silently coerce a
    sheared matrix to the nearest rotation (only a stderr warning), moving every voxel."""
    if int(hdr.get("sform_code") or 0) <= 0:
        return None
    m = np.asarray(hdr["srow"], dtype=float).reshape(3, 4)[:, :3]
    norms = np.linalg.norm(m, axis=0)
    if not np.all(np.isfinite(m)) or np.any(norms <= 0):
        return "NIfTI header has an invalid sform matrix (zero or non-finite axis)"
    found = direction_problem(m / norms)
    return f"NIfTI header sform: {found}" if found else None


def header_problem(hdr: dict) -> str | None:
    """What is wrong with a parsed header (:func:`nifti_header`) that ITK would accept silently, or None."""
    ndim = int(hdr["dim"][0])
    if not 1 <= ndim <= 7:
        return f"NIfTI header has an invalid number of dimensions ({ndim})"
    dims = [int(d) for d in hdr["dim"][1:ndim + 1]]
    pix = [float(v) for v in hdr["pixdim"][1:min(ndim, 3) + 1]]
    if any(not np.isfinite(v) or v <= 0 for v in pix):
        return f"NIfTI header has an invalid voxel size (pixdim {fmt_values(pix)} mm; each must be > 0)"
    sheared = _sform_problem(hdr)
    if sheared:
        return sheared
    if min(dims) < 1 or hdr["bitpix"] <= 0 or hdr["bitpix"] % 8:
        return f"NIfTI header is inconsistent (dim {dims}, bitpix {hdr['bitpix']})"
    return None


def payload_bytes(hdr: dict) -> int:
    """Bytes of voxel data a header with no :func:`header_problem` announces."""
    ndim = int(hdr["dim"][0])
    return int(np.prod([int(d) for d in hdr["dim"][1:ndim + 1]], dtype=np.int64)) * (hdr["bitpix"] // 8)


def nifti_payload_problem(path: str | Path, chunk: int = 1 << 22) -> tuple[str, str] | None:
    """``(kind, text)`` for what is wrong with a NIfTI file that ITK would read silently, or None.

    ITK's NIfTI reader zero-fills a truncated file, turns NaN/inf voxels into 0 and treats a zero
    pixdim as 1 mm, all without raising. This reads the header and streams the voxel payload (through
    gzip for ``.nii.gz``) to catch those: truncation, invalid voxel size, non-finite voxels.
    A ``.nii.gz`` is read to the end of its compressed stream, so a flipped bit (gzip CRC-32 error) is caught too,
    and a sheared sform (non-orthogonal axes) is a ``header`` problem.
    ``kind`` is ``truncated``, ``header`` or ``nonfinite``. Non-NIfTI files (and ``.hdr/.img`` pairs) return None.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            opener = gzip.open if raw.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            head = fh.read(540)
            hdr = nifti_header(head)
            if hdr is None:
                return None
            found = header_problem(hdr)
            if found:
                return "header", found
            need = payload_bytes(hdr)
            fh.seek(hdr["vox_offset"])
            dtype = _NIFTI_FLOAT.get(hdr["datatype"])
            dtype = np.dtype(hdr["endian"] + dtype) if dtype else None
            step = chunk - chunk % 8
            got, nonfinite = 0, 0
            while got < need:
                block = fh.read(min(step, need - got))
                if not block:
                    break
                if dtype is not None:
                    usable = len(block) - len(block) % dtype.itemsize
                    nonfinite += int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], dtype))))
                got += len(block)
            if got >= need and opener is gzip.open:
                while fh.read(step):  # to the end: gzip checks CRC-32 and length only there
                    pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        return "truncated", f"compressed data is cut off or corrupt ({e})"
    except (OSError, struct.error, ValueError, OverflowError) as e:
        return "truncated", f"cannot read the NIfTI payload ({e})"
    if got < need:
        return "truncated", f"NIfTI file is truncated: {got:,} of {need:,} voxel bytes present"
    if nonfinite:
        return "nonfinite", f"{nonfinite} NaN/inf voxels stored in the file"
    return None
