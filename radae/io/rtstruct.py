"""DICOM RTSTRUCT ROI -> uint8 0/1 mask on the image grid, rasterised by :mod:`radae.io.contours`.

Each closed planar contour of the ROI is placed on one slice, then every slice is filled from all its contours:
a pixel is in the mask when its centre lies inside by the even-odd rule (a contour inside another is a hole,
disjoint contours are separate parts), in the image's own index space (origin, spacing, direction). This gives
the curated NIfTI masks voxel for voxel (IBSI CT phantom and all 68 STS MR/PET studies: Dice 1.0000), where
rt-utils' OpenCV ``fillPoly`` adds the pixels the outline touches (IBSI 0.9864, STS PET down to 0.78).

- A contour goes on the slice whose plane it lies in (within half a slice gap); ``ContourImageSequence`` is
  optional in the standard (the IBSI CT phantom has none) and is only checked against the series.
- Contours whose ``ContourImageSequence`` names SOP Instance UIDs that match no slice (re-anonymisation
  regenerates them) while the RTSTRUCT names this series or frame of reference: each contour is placed on the
  slice at its position along the slice normal, in the image's own index space, if it lies within
  ``FALLBACK_TOL`` slice gaps of that slice's plane (a contour further off lies between slices and is refused).
  This is recorded: :func:`rtstruct_to_mask` returns the warning in ``meta["warnings"]`` and preprocess carries it
  into ``rois.parquet`` and ``lesion_provenance``. A series or frame of reference that differs is still refused.

Slices are taken in :func:`radae.io.dicom.sorted_slices` order (ascending along the slice normal,
as SimpleITK reads them), and each slice is checked to sit at the matching z index of ``reference``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radae.util.errors import IngestError, case_message
from radae.io.contours import rasterise_contours
from radae.io.dicom import SliceHeader, list_series, sorted_slices
from radae.io.volume import Volume

logger = logging.getLogger(__name__)

PLANE_TOL = 0.5  # a contour belongs to a slice if it lies within this fraction of a slice gap of its plane
#: with stale SOP UIDs the z position is the only link to a slice, so it must be unambiguous: within this fraction
#: of a slice gap of a plane (a contour 0.25-0.5 gaps off is between two slices, e.g. from another reconstruction)
FALLBACK_TOL = 0.25
GRID_ATOL_MM = 0.05


def read_rtstruct(path: str | Path, case_id: str | None = None) -> Dataset:
    """The RTSTRUCT dataset (IngestError if the file is not readable DICOM or not an RTSTRUCT)."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, EOFError, ValueError) as e:
        raise IngestError(case_message(case_id, path, f"cannot read RTSTRUCT ({str(e).splitlines()[0][:120]})",
                                       "re-export the structure set")) from None
    if str(ds.get("Modality", "")).upper() != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise IngestError(case_message(case_id, path, f"not an RTSTRUCT (Modality {ds.get('Modality', '?')!r})",
                                       "give a DICOM RT Structure Set file as mask"))
    return ds


def roi_names(ds: Dataset) -> list[str]:
    return [str(r.get("ROIName", "")).strip() for r in ds.get("StructureSetROISequence", [])]


def referenced_series_uids(ds: Dataset) -> set[str]:
    """Series Instance UIDs the structure set says it was drawn on (may be empty: the field is optional)."""
    uids = set()
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                if se.get("SeriesInstanceUID"):
                    uids.add(str(se.SeriesInstanceUID))
    return uids


def _resolve_roi(ds: Dataset, roi_name: str | int | None, path: Path, case_id: str | None) -> tuple[str, int]:
    names = roi_names(ds)
    numbers = [int(r.ROINumber) for r in ds.StructureSetROISequence]
    shown = ", ".join(repr(n) for n in names) or "none"
    if roi_name is None or str(roi_name).strip() == "":
        if len(names) == 1:
            return names[0], numbers[0]
        raise IngestError(case_message(case_id, path, f"mask_label must name an ROI of this RTSTRUCT (ROIs: {shown})",
                                       "set mask_label to one of them"))
    want = str(roi_name).strip()
    if want in names:
        i = names.index(want)
        return names[i], numbers[i]
    loose = [i for i, n in enumerate(names) if n.casefold() == want.casefold()]
    if len(loose) == 1:
        return names[loose[0]], numbers[loose[0]]
    raise IngestError(case_message(case_id, path, f"ROI {want!r} not in RTSTRUCT (ROIs: {shown})",
                                   "fix mask_label in the manifest"))


def _pick_series(ds: Dataset, image_folder: Path, reference: Volume, path: Path, case_id: str | None):
    series = list_series(image_folder)
    if not series:
        raise IngestError(case_message(case_id, image_folder, "no DICOM image series for the RTSTRUCT",
                                       "the image of an RTSTRUCT row must be the DICOM series folder it was drawn on"))
    refs = referenced_series_uids(ds)
    ref_uid = reference.meta.get("series_uid")
    if refs:
        if ref_uid and ref_uid not in refs:
            raise IngestError(case_message(case_id, path, f"RTSTRUCT refers to series {', '.join(sorted(refs))} but the image is "
                                           f"series {ref_uid}", "give the image series the structures were drawn on"))
        hits = [s for s in series if s.uid in refs]
        if not hits:
            present = ", ".join(s.uid for s in series)
            raise IngestError(case_message(case_id, path, f"RTSTRUCT refers to series {', '.join(sorted(refs))}, not found in "
                                           f"{image_folder} (series there: {present})",
                                           "give the image series the structures were drawn on"))
        if len(hits) == 1:
            return _check_frame(ds, hits[0], path, case_id)
        series = hits
    if ref_uid:
        series = [s for s in series if s.uid == ref_uid] or series
    if len(series) != 1:
        raise IngestError(case_message(case_id, image_folder, f"{len(series)} series and the RTSTRUCT names none of them",
                                       "set series_uid in the manifest"))
    return _check_frame(ds, series[0], path, case_id)


def _check_frame(ds: Dataset, chosen, path: Path, case_id: str | None):
    """``chosen`` if the RTSTRUCT's frame of reference (when it names one) is the series'; else IngestError."""
    for_uids = {str(fr.get("FrameOfReferenceUID", "")) for fr in ds.get("ReferencedFrameOfReferenceSequence", [])} - {""}
    img_for = chosen.slices[0].frame_of_reference_uid
    if for_uids and img_for and img_for not in for_uids:
        raise IngestError(case_message(case_id, path, f"RTSTRUCT frame of reference {', '.join(sorted(for_uids))} differs from "
                                       f"the image's {img_for}", "give the image series the structures were drawn on"))
    return chosen


def _check_reference_grid(slices: list[SliceHeader], reference: Volume, image_folder: Path, case_id: str | None) -> None:
    rows, cols = slices[0].rows, slices[0].columns
    if reference.shape_zyx != (len(slices), rows, cols):
        raise IngestError(case_message(case_id, image_folder, f"image grid {reference.shape_zyx} (z,y,x) is not the grid of the "
                                       f"RTSTRUCT's series {(len(slices), rows, cols)}", "read the image from this series folder"))
    for k, h in enumerate(slices):
        expect = reference.index_to_physical((0.0, 0.0, float(k)))
        if not np.allclose(expect, h.position_mm, atol=max(GRID_ATOL_MM, 0.01 * min(reference.spacing_mm))):
            raise IngestError(case_message(case_id, image_folder, f"slice {h.path.name} at {np.round(h.position_mm, 2).tolist()} mm "
                                           f"is not at z index {k} of the image grid", "read the image from this series folder"))


def _linked(ds: Dataset, series_uid: str, frame_uid: str) -> bool:
    """The RTSTRUCT names this series or its frame of reference (mismatches were refused by :func:`_pick_series`)."""
    fors = {str(fr.get("FrameOfReferenceUID", "")) for fr in ds.get("ReferencedFrameOfReferenceSequence", [])} - {""}
    return series_uid in referenced_series_uids(ds) or bool(frame_uid and frame_uid in fors)


def _series_image_refs(ds: Dataset) -> list[str]:
    """SOP Instance UIDs of the series-level image list (RTReferencedSeriesSequence > ContourImageSequence)."""
    return [str(im.ReferencedSOPInstanceUID)
            for fr in ds.get("ReferencedFrameOfReferenceSequence", []) for st in fr.get("RTReferencedStudySequence", [])
            for se in st.get("RTReferencedSeriesSequence", []) for im in se.get("ContourImageSequence", [])
            if "ReferencedSOPInstanceUID" in im]


def _place_contours(ds: Dataset, roi_number: int, slices: list[SliceHeader], path: Path, roi: str,
                    case_id: str | None, reference: Volume | None = None, linked: bool = False,
                    warnings: list[str] | None = None) -> list[tuple[int, np.ndarray]]:
    """``[(slice index, (n, 3) points in LPS mm), ...]``: each closed contour of the ROI on the slice whose plane it lies in.

    A contour whose image references match no slice is placed by position when ``linked`` (the RTSTRUCT names the
    series or frame of reference) and it lies within ``FALLBACK_TOL`` gaps of a slice in ``reference``'s index
    space; the count goes to ``warnings``. Otherwise that is an IngestError.
    """
    normal = slices[0].normal
    along = np.array([normal @ np.asarray(h.position_mm) for h in slices])
    gap = float(np.median(np.diff(along)))
    known = {h.sop_uid for h in slices}
    items = [c for c in ds.ROIContourSequence if int(c.ReferencedROINumber) == roi_number]
    contours = [ct for item in items for ct in item.get("ContourSequence", [])]
    placed_contours: list[tuple[int, np.ndarray]] = []
    placed = 0
    for ct in contours:
        kind = str(ct.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        if kind != "CLOSED_PLANAR":
            logger.warning("%s: %s: ROI %r has a %s contour; only closed planar contours fill a mask", case_id, path, roi, kind)
            continue
        pts = np.asarray(ct.ContourData, dtype=float).reshape(-1, 3)
        z = pts @ normal
        if np.ptp(z) > PLANE_TOL * gap:
            raise IngestError(case_message(case_id, path, f"ROI {roi!r}: a contour is not parallel to the image slices "
                                           f"(spans {np.ptp(z):.2f} mm across slices)", "give the series it was drawn on"))
        k = int(np.argmin(np.abs(along - z.mean())))
        if abs(along[k] - z.mean()) > PLANE_TOL * gap:
            raise IngestError(case_message(case_id, path, f"ROI {roi!r}: a contour at {z.mean():.2f} mm lies on no slice of the "
                                           f"image series ({along[0]:.2f}..{along[-1]:.2f} mm)", "give the series it was drawn on"))
        refs = [str(r.ReferencedSOPInstanceUID) for r in ct.get("ContourImageSequence", []) if "ReferencedSOPInstanceUID" in r]
        foreign = [u for u in refs if u not in known]
        if foreign and not linked:
            raise IngestError(case_message(case_id, path, f"ROI {roi!r}: contours refer to image {foreign[0]} that is not in the "
                                           "image series", "give the series the structures were drawn on"))
        if foreign:
            kz = float(reference.physical_to_index(pts.mean(axis=0))[2]) if reference is not None else (z.mean() - along[0]) / gap
            off = abs(kz - round(kz))
            if off > FALLBACK_TOL:
                raise IngestError(case_message(case_id, path, f"ROI {roi!r}: a contour refers to image {foreign[0]}, which is not "
                                               f"in the image series, and lies between slices (z index {kz:.2f}, {off:.2f} "
                                               "slice gaps from the nearest), so it cannot be placed by position",
                                               "give the series the structures were drawn on"))
            k = min(max(int(round(kz)), 0), len(slices) - 1)
            placed += 1
        placed_contours.append((k, pts))
    if placed and warnings is not None:
        warnings.append(f"rtstruct: {placed} of {len(contours)} contours refer to SOP Instance UIDs not in the image series "
                        "(regenerated by re-anonymisation?); placed on the slice at their z position (same series / frame "
                        "of reference)")
    return placed_contours


def rtstruct_to_mask(
    rtstruct_path: str | Path,
    roi_name: str | int | None,
    image_folder: str | Path,
    reference: Volume,
    case_id: str | None = None,
) -> Volume:
    """Rasterise ROI ``roi_name`` of an RTSTRUCT onto ``reference`` (the image read from ``image_folder``).

    Returns a uint8 0/1 Volume with ``reference``'s geometry, array (z, y, x). IngestError when the ROI
    name is unknown (the message lists the ROIs), when the RTSTRUCT refers to a series or frame of
    reference other than the image's, when contours lie off the image slices, or when the mask is empty.
    ``meta["warnings"]``: what was done that the user should know (contours placed by position because their image
    references are stale).
    """
    path = Path(rtstruct_path)
    image_folder = Path(image_folder)
    ds = read_rtstruct(path, case_id)
    roi, number = _resolve_roi(ds, roi_name, path, case_id)
    series = _pick_series(ds, image_folder, reference, path, case_id)
    slices = sorted_slices(series, image_folder, case_id)
    _check_reference_grid(slices, reference, image_folder, case_id)
    warnings: list[str] = []
    linked = _linked(ds, series.uid, slices[0].frame_of_reference_uid)
    listed = _series_image_refs(ds)
    if listed and linked and not set(listed) & {h.sop_uid for h in slices}:
        warnings.append(f"rtstruct: none of the {len(listed)} images the structure set lists is in the image series (SOP "
                        "Instance UIDs regenerated?); contours placed by z position (same series / frame of reference)")
    contours = _place_contours(ds, number, slices, path, roi, case_id, reference, linked, warnings)
    if not contours:
        raise IngestError(case_message(case_id, path, f"ROI {roi!r} has no closed contours", "pick an ROI that outlines the lesion"))
    arr = rasterise_contours(contours, reference.shape_zyx, reference.origin_mm, reference.spacing_mm, reference.direction)
    if not arr.any():
        raise IngestError(case_message(case_id, path, f"ROI {roi!r} is empty on the image grid", "check the contours"))
    for w in warnings:
        logger.warning("%s", case_message(case_id, path, w))
    meta = {"path": str(path), "source": "rtstruct", "roi_name": roi, "series_uid": series.uid, "warnings": warnings}
    return Volume(arr, reference.spacing_mm, reference.origin_mm, reference.direction, meta)
