"""DICOM image series -> :class:`radae.io.volume.Volume`, with the checks a series needs first.

A folder may hold several series (and non-image objects such as RTSTRUCT or SEG, which are ignored
here). Headers are read with pydicom, the chosen series is checked (one orientation, no duplicate or
missing slices, uniform slice spacing, no gantry tilt), then the voxels are read with SimpleITK's
``ImageSeriesReader`` in the order checked here. Slices are sorted by their position along the slice
normal (cross product of the row and column cosines), ascending: the same rule SimpleITK/GDCM
use, so voxel ``z`` index ``k`` is the ``k``-th slice of :func:`sorted_slices`.

Only non-identifying header fields are read or reach ``Volume.meta``: series/frame-of-reference UIDs, modality,
slice count, pixel units. Free-text tags (series/study descriptions, names, comments, private tags) are never
read, so no message, log line or output can echo them: a series is named by its UID and folder.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from radae.util.errors import IngestError, case_message
from radae.io.volume import Volume

logger = logging.getLogger(__name__)

# Objects that are not image slices; they live beside series and are skipped when reading images.
NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "SEG", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "RWV"})
SPACING_RTOL = 1e-2  # slice gaps may differ by 1 % of the median gap (same default as highdicom)
POSITION_ATOL_MM = 1e-3
TILT_TOL_DEG = 0.05
_HEADER_TAGS = [
    "Modality", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "InstanceNumber",
    "NumberOfFrames", "GantryDetectorTilt", "Units",
]


@dataclass(frozen=True)
class SliceHeader:
    """The few header fields of one DICOM file that geometry checks and series selection need."""

    path: Path
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    frame_of_reference_uid: str
    position_mm: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # row cosine (3) + column cosine (3)
    pixel_spacing_mm: tuple[float, float] | None  # (row spacing = between rows, column spacing)
    rows: int
    columns: int
    number_of_frames: int
    gantry_tilt_deg: float
    units: str

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])

    @property
    def is_image(self) -> bool:
        return self.modality.upper() not in NON_IMAGE_MODALITIES and self.rows > 0 and self.columns > 0


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder (slices in file-listing order, not yet checked)."""

    uid: str
    modality: str
    slices: tuple[SliceHeader, ...]

    def summary(self) -> str:
        """UID, modality, slice count: never free-text tags (descriptions can hold names and record numbers)."""
        return f"{self.uid} ({self.modality}, {len(self.slices)} slices)"


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _floats(ds: pydicom.Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def read_header(path: str | Path) -> SliceHeader | None:
    """Header of one file, or ``None`` if it is not a DICOM file."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
        return None
    if "SOPInstanceUID" not in ds and "SeriesInstanceUID" not in ds:
        return None
    try:
        tilt = float(ds.get("GantryDetectorTilt", 0) or 0)
    except (TypeError, ValueError):
        tilt = 0.0
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    return SliceHeader(
        path=path,
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=_text(ds, "Modality").upper(),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        position_mm=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing_mm=_floats(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        number_of_frames=frames,
        gantry_tilt_deg=tilt,
        units=_text(ds, "Units"),
    )


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def list_objects(folder: str | Path) -> list[SliceHeader]:
    """Headers of every DICOM file directly inside ``folder`` (images and non-image objects)."""
    folder = Path(folder)
    return [h for h in (read_header(p) for p in _files(folder)) if h is not None]


def list_series(folder: str | Path, headers: list[SliceHeader] | None = None) -> list[SeriesInfo]:
    """Image series directly inside ``folder`` (non-image objects such as RTSTRUCT/SEG are left out)."""
    headers = list_objects(folder) if headers is None else headers
    groups: dict[str, list[SliceHeader]] = {}
    for h in headers:
        if h.is_image:
            groups.setdefault(h.series_uid, []).append(h)
    out = []
    for uid, sl in groups.items():
        out.append(SeriesInfo(uid=uid, modality=sl[0].modality, slices=tuple(sl)))
    return sorted(out, key=lambda s: s.uid)


def _fail(case_id: str | None, folder: Path, problem: str, hint: str | None = None) -> IngestError:
    return IngestError(case_message(case_id, folder, problem, hint))


def select_series(folder: str | Path, series_uid: str | None = None, case_id: str | None = None) -> SeriesInfo:
    """The one image series of ``folder`` (or the one with ``series_uid``); IngestError listing the choices otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(case_id, folder, "DICOM folder not found", "check the manifest path")
    headers = list_objects(folder)
    series = list_series(folder, headers)
    if not series:
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        others = sorted({h.modality or "?" for h in headers})
        if subdirs and not headers:
            raise _fail(case_id, folder, f"no DICOM files directly in this folder (sub-folders: {', '.join(subdirs[:8])})",
                        "point the manifest at the folder that holds the series' slice files")
        found = f"only non-image DICOM objects ({', '.join(others)})" if headers else "no DICOM files"
        raise _fail(case_id, folder, f"no DICOM image series found: {found}", "point the manifest at a DICOM image series folder")
    listing = "; ".join(s.summary() for s in series)
    if series_uid:
        for s in series:
            if s.uid == series_uid.strip():
                return s
        raise _fail(case_id, folder, f"series_uid {series_uid} not in this folder; series present: {listing}",
                    "fix series_uid in the manifest")
    if len(series) > 1:
        raise _fail(case_id, folder, f"{len(series)} image series in one folder: {listing}",
                    "set series_uid in the manifest to pick one")
    return series[0]


def sorted_slices(series: SeriesInfo, folder: str | Path, case_id: str | None = None) -> list[SliceHeader]:
    """Slices sorted along the slice normal after checking they form one regular 3D grid.

    Raises IngestError (one line: case, folder, problem, what to do) for: a single slice, enhanced
    multi-frame files, missing position/orientation, mixed orientations or matrix sizes, duplicate
    positions, gantry tilt, missing slices and non-uniform slice spacing.
    """
    folder = Path(folder)
    sl = list(series.slices)
    uid = series.uid
    if any(h.number_of_frames > 1 for h in sl):
        raise _fail(case_id, folder, f"series {uid} is an enhanced multi-frame DICOM object",
                    "convert it to NIfTI (e.g. dcm2niix) and list the NIfTI file as image")
    if len(sl) < 2:
        raise _fail(case_id, folder, f"series {uid} has {len(sl)} slice; radae needs a 3D volume",
                    "give the folder of a 3D series (a 2D image cannot be used)")
    unplaced = [h.path.name for h in sl if h.position_mm is None or h.orientation is None or h.pixel_spacing_mm is None]
    if unplaced:
        raise _fail(case_id, folder, f"series {uid}: {len(unplaced)} file(s) lack ImagePositionPatient/ImageOrientationPatient/"
                    f"PixelSpacing (e.g. {unplaced[0]})", "re-export the series with full geometry tags")
    o0 = np.asarray(sl[0].orientation)
    if any(not np.allclose(h.orientation, o0, atol=1e-4) for h in sl):
        raise _fail(case_id, folder, f"series {uid} mixes slice orientations (localizer or several stacks in one series?)",
                    "export the axial stack alone, or convert with dcm2niix")
    sizes = {(h.rows, h.columns) for h in sl}
    spacings = {tuple(np.round(h.pixel_spacing_mm, 5)) for h in sl}
    if len(sizes) > 1 or len(spacings) > 1:
        raise _fail(case_id, folder, f"series {uid} mixes matrix sizes {sorted(sizes)} or pixel spacings {sorted(spacings)}",
                    "split the series or convert with dcm2niix")
    tilts = {round(h.gantry_tilt_deg, 3) for h in sl}
    if any(abs(t) > TILT_TOL_DEG for t in tilts):
        raise _fail(case_id, folder, f"series {uid} was acquired with gantry tilt {sorted(tilts)} deg",
                    "de-tilt/resample it first (e.g. dcm2niix does) and give the corrected volume")
    normal = sl[0].normal
    sl.sort(key=lambda h: float(normal @ np.asarray(h.position_mm)))
    pos = np.array([h.position_mm for h in sl], dtype=float)
    along = pos @ normal
    gaps = np.diff(along)
    dup = np.flatnonzero(gaps < POSITION_ATOL_MM)
    if dup.size:
        k = int(dup[0])
        raise _fail(case_id, folder, f"series {uid}: {dup.size} slice(s) share a position with another "
                    f"(e.g. {sl[k].path.name} and {sl[k + 1].path.name} at {along[k]:.2f} mm; several echoes/phases/"
                    "acquisitions in one series?)", "split the series so each position occurs once")
    offsets = pos - pos[0]
    perp = offsets - np.outer(offsets @ normal, normal)
    tilt_deg = float(np.degrees(np.arctan2(np.linalg.norm(perp[-1]), abs(along[-1] - along[0]))))
    if tilt_deg > TILT_TOL_DEG and np.linalg.norm(perp, axis=1).max() > POSITION_ATOL_MM:
        raise _fail(case_id, folder, f"series {uid}: slices are sheared against their normal by {tilt_deg:.2f} deg "
                    "(gantry tilt)", "de-tilt/resample it first (e.g. dcm2niix does) and give the corrected volume")
    step = float(np.median(gaps))
    off = np.abs(gaps - step) > SPACING_RTOL * step
    if off.any():
        ratio = gaps / step
        near_multiple = np.abs(ratio - np.round(ratio)) <= SPACING_RTOL * np.round(ratio)
        holes = np.flatnonzero(off & near_multiple & (np.round(ratio) >= 2))
        if holes.size == off.sum():
            n_missing = int(sum(np.round(ratio[holes]) - 1))
            where = ", ".join(f"{along[k]:.2f}..{along[k + 1]:.2f} mm" for k in holes[:3])
            raise _fail(case_id, folder, f"series {uid}: {n_missing} slice(s) missing (gap(s) at {where}; "
                        f"regular spacing {step:.3f} mm)", "re-export the complete series")
        raise _fail(case_id, folder, f"series {uid}: non-uniform slice spacing (gaps {gaps.min():.3f}..{gaps.max():.3f} mm, "
                    f"median {step:.3f} mm)", "resample to a regular grid (e.g. dcm2niix) or export one regular stack")
    return sl


def read_dicom_series(folder: str | Path, series_uid: str | None = None, case_id: str | None = None) -> Volume:
    """Read one DICOM image series folder as a 3D Volume (array (z, y, x), LPS geometry).

    ``series_uid`` picks a series when the folder holds several; without it such a folder is an
    IngestError listing each series' UID, modality and slice count. Pixel values are the
    stored values after Rescale Slope/Intercept (HU for CT; PET stays in its stored units, see
    ``meta['units']`` -- no SUV conversion is done here).
    """
    folder = Path(folder)
    series = select_series(folder, series_uid, case_id)
    slices = sorted_slices(series, folder, case_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(h.path) for h in slices])
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    try:
        img = reader.Execute()
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1][:160] if str(e).strip() else "unknown reader error"
        raise _fail(case_id, folder, f"cannot read series {series.uid} ({first})",
                    "the files may be corrupt or use an unsupported compression; convert with dcm2niix") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise _fail(case_id, folder, f"series {series.uid} has {img.GetNumberOfComponentsPerPixel()} components per pixel (colour?)",
                    "give a greyscale series")
    # Slice spacing from the checked positions (SimpleITK takes it from the first slices only).
    along = [float(slices[0].normal @ np.asarray(h.position_mm)) for h in slices]
    spacing = list(img.GetSpacing())
    spacing[2] = (along[-1] - along[0]) / (len(slices) - 1)
    img.SetSpacing(spacing)
    meta = {
        "path": str(folder),
        "source": "dicom",
        "series_uid": series.uid,
        "modality": series.modality,
        "frame_of_reference_uid": slices[0].frame_of_reference_uid,
        "n_slices": len(slices),
        "units": slices[0].units,
    }
    if series.modality == "PT":
        logger.info("%s: PET series %s read in stored units %r (no SUV conversion)", case_id or folder, series.uid,
                    slices[0].units or "?")
    return Volume.from_sitk(img, meta=meta)
