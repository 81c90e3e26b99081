"""A plain NIfTI file read in one pass: the voxels and the integrity checks come from one decompression.

radae used to read a file twice: ITK's reader, then :func:`radae.io.nifti.nifti_payload_problem` decompressing it
again for what ITK accepts silently (gzip CRC, truncation, NaN voxels). :func:`read_plain_nifti` decompresses the
file once with zlib (which checks the CRC-32 and length), runs the same header checks, takes the voxels straight
from the decompressed bytes and the geometry (spacing, origin, direction: ITK's reading of the qform/sform) from
ITK's header-only read (of a scratch copy of the header bytes for a ``.nii.gz``: see :func:`_itk_header`),
remembered for the next file whose geometry fields are the same bytes (a lesion's mask). On real images this costs
about what ITK's read alone did; on small ones (40³) less than half.

It handles only the plain case, where ITK would hand over those very bytes: a single-file NIfTI-1, 3D, one
component, little endian, an integer or float type ITK keeps as it is, no intensity scaling, every voxel finite.
For any other file it returns None and the caller uses ITK's full read and radae's full checks (and their error
messages). Equality with ``SimpleITK.ReadImage`` (voxel hash, pixel type, geometry) is tested across types and
orientations (``tests/io/test_fastnifti.py``).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radae.io.nifti import header_problem, nifti_header, payload_bytes
from radae.io.volume import Volume

#: NIfTI datatype code -> (numpy type, the SimpleITK pixel type ITK reads it as)
PLAIN_TYPES = {
    2: ("u1", sitk.sitkUInt8), 256: ("i1", sitk.sitkInt8), 4: ("i2", sitk.sitkInt16), 512: ("u2", sitk.sitkUInt16),
    8: ("i4", sitk.sitkInt32), 768: ("u4", sitk.sitkUInt32), 1024: ("i8", sitk.sitkInt64),
    1280: ("u8", sitk.sitkUInt64), 16: ("f4", sitk.sitkFloat32), 64: ("f8", sitk.sitkFloat64),
}
_PIXEL_IDS = {np.dtype("<" + t): pid for t, pid in PLAIN_TYPES.values()}
#: memory-backed scratch folder for header copies where there is one (Linux), else the system temp folder
_SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
#: the NIfTI-1 header bytes ITK computes the geometry from: sizeof_hdr, dim, pixdim (with qfac), xyzt_units,
#: qform/sform codes, quaternion, offsets, srow rows, magic
_GEOMETRY_BYTES = (slice(0, 4), slice(40, 56), slice(76, 108), slice(123, 124), slice(252, 328), slice(344, 348))
#: ITK's (spacing, origin, direction) by those bytes, for the last few headers (a mask shares its image's)
_GEOMETRY: dict[bytes, tuple] = {}
_GEOMETRY_KEPT = 16
_LOCK = threading.Lock()


def _decompressed(path: Path) -> tuple[bytes | None, bool]:
    """(the file's NIfTI bytes, whether it was gzip-compressed); None bytes for a damaged gzip stream."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw, False
    try:
        return gzip.decompress(raw), True  # every member, CRC-32 and length checked
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError):
        return None, True


def _plain_array(data: bytes) -> tuple[np.ndarray, dict] | None:
    """(the (z, y, x) voxel array, the parsed header) of a plain NIfTI-1 file's bytes, or None (module docstring)."""
    hdr = nifti_header(data[:540])
    if hdr is None or hdr.get("version") != 1 or hdr["endian"] != "<" or header_problem(hdr) is not None:
        return None
    slope, inter = hdr["scl"]
    if int(hdr["dim"][0]) != 3 or hdr["datatype"] not in PLAIN_TYPES or not (slope in (0.0, 1.0) and inter == 0.0):
        return None
    dtype = np.dtype("<" + PLAIN_TYPES[hdr["datatype"]][0])
    need = payload_bytes(hdr)
    if dtype.itemsize * 8 != hdr["bitpix"] or hdr["vox_offset"] < 348 or len(data) < hdr["vox_offset"] + need:
        return None
    x, y, z = (int(d) for d in hdr["dim"][1:4])
    arr = np.frombuffer(data, dtype=dtype, count=x * y * z, offset=hdr["vox_offset"]).reshape(z, y, x)
    if dtype.kind == "f" and not np.isfinite(arr).all():
        return None
    return arr, hdr


def _itk_info(path: str) -> sitk.ImageFileReader | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("NiftiImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def _itk_header(path: Path, head: bytes, compressed: bool) -> sitk.ImageFileReader | None:
    """ITK's reading of the header (geometry, pixel type, size). For a ``.nii.gz`` it reads a copy of the header bytes
    (``head``: up to ``vox_offset``) in an uncompressed ``.nii`` scratch file, deleted at once: ITK inflates the file's
    whole first deflate block to read 348 bytes (3 ms for a small image, most of its read time); the same bytes
    give the same geometry (tested). A scratch file that cannot be written means ITK reads the file itself."""
    if compressed:
        try:
            fd, scratch = tempfile.mkstemp(suffix=".nii", prefix="radae-header-", dir=_SCRATCH_DIR)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(head)
                return _itk_info(scratch)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(scratch)
    return _itk_info(str(path))


def read_plain_nifti(path: str | Path) -> Volume | None:
    """The Volume ``SimpleITK.ReadImage(path)`` would give for a plain, intact NIfTI file; None for any other file."""
    path = Path(path)
    try:
        data, compressed = _decompressed(path)
    except OSError:
        return None
    plain = _plain_array(data) if data is not None else None
    if plain is None:
        return None
    arr, hdr = plain
    key = b"".join(data[part] for part in _GEOMETRY_BYTES)
    with _LOCK:
        geometry = _GEOMETRY.get(key)
    if geometry is None:
        reader = _itk_header(path, data[:hdr["vox_offset"]], compressed)
        z, y, x = arr.shape
        if (reader is None or reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1
                or reader.GetPixelID() != _PIXEL_IDS[arr.dtype] or tuple(reader.GetSize()) != (x, y, z)):
            return None
        geometry = (tuple(float(v) for v in reader.GetSpacing()), tuple(float(v) for v in reader.GetOrigin()),
                    tuple(float(v) for v in reader.GetDirection()))
        with _LOCK:
            _GEOMETRY[key] = geometry
            while len(_GEOMETRY) > _GEOMETRY_KEPT:
                _GEOMETRY.pop(next(iter(_GEOMETRY)))
    return Volume(arr.copy(), *geometry, {"path": str(path)})
