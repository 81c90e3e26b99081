"""DICOM SEG segment -> uint8 0/1 mask on the image grid (read with highdicom).

The segment is taken out of the SEG as a regular 3D volume (``Segmentation.get_volume``, which places
frames by their plane positions, so frame order and omitted empty frames do not matter), then put onto
the reference grid by nearest-neighbour resampling in physical (LPS) space. When the SEG was made on
the image series itself this is an exact voxel copy.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radae.util.errors import IngestError, case_message
from radae.io.volume import Volume

logger = logging.getLogger(__name__)

FRACTIONAL_THRESHOLD = 0.5


def read_seg(path: str | Path, case_id: str | None = None):
    """The highdicom Segmentation (IngestError if the file is not a readable DICOM SEG)."""
    import highdicom as hd
    import pydicom

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path))
            if str(ds.get("Modality", "")).upper() != "SEG":
                raise IngestError(case_message(case_id, path, f"not a DICOM SEG (Modality {ds.get('Modality', '?')!r})",
                                               "give a DICOM Segmentation file as mask"))
            return hd.seg.Segmentation.from_dataset(ds)
    except IngestError:
        raise
    except Exception as e:  # pydicom/highdicom raise a variety of errors on malformed files
        raise IngestError(case_message(case_id, path, f"cannot read DICOM SEG ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                                       "re-export the segmentation")) from None


def segments(seg) -> list[tuple[int, str]]:
    """(segment number, segment label) of every segment."""
    return [(int(n), str(seg.get_segment_description(n).segment_label)) for n in seg.segment_numbers]


def _resolve_segment(seg, label: int | str | None, path: Path, case_id: str | None) -> int:
    segs = segments(seg)
    shown = ", ".join(f"{n}: {lab!r}" for n, lab in segs) or "none"
    if label is None or str(label).strip() == "":
        if len(segs) == 1:
            return segs[0][0]
        raise IngestError(case_message(case_id, path, f"mask_label must pick a segment of this SEG (segments {shown})",
                                       "set mask_label to a segment number or label"))
    want = str(label).strip()
    try:
        number = int(float(want))
    except ValueError:
        number = None
    if number is not None and number == float(want) and number in {n for n, _ in segs}:
        return number
    exact = [n for n, lab in segs if lab == want] or [n for n, lab in segs if lab.casefold() == want.casefold()]
    if len(exact) == 1:
        return exact[0]
    raise IngestError(case_message(case_id, path, f"segment {want!r} not in SEG (segments {shown})", "fix mask_label in the manifest"))


def seg_to_mask(seg_path: str | Path, label: int | str | None, reference: Volume, case_id: str | None = None) -> Volume:
    """Segment ``label`` (number or label text) of a DICOM SEG as a uint8 0/1 Volume on ``reference``'s grid.

    IngestError when the segment is unknown (the message lists the segments), when the SEG's frame of
    reference differs from the image's (if both are known), when its frames do not form a regular 3D
    volume, or when the segment does not overlap the image.
    """
    path = Path(seg_path)
    seg = read_seg(path, case_id)
    number = _resolve_segment(seg, label, path, case_id)
    seg_for = str(seg.get("FrameOfReferenceUID", "") or "")
    img_for = str(reference.meta.get("frame_of_reference_uid", "") or "")
    if seg_for and img_for and seg_for != img_for:
        raise IngestError(case_message(case_id, path, f"SEG frame of reference {seg_for} differs from the image's {img_for}",
                                       "give the image series the segmentation was made on"))
    fractional = str(seg.segmentation_type.value).upper() == "FRACTIONAL"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = seg.get_volume(segment_numbers=[number], combine_segments=False, dtype=np.float32 if fractional else np.uint8)
    except Exception as e:
        raise IngestError(case_message(case_id, path, f"SEG frames do not form a regular 3D volume ({str(e).splitlines()[0][:120]})",
                                       "export the segmentation on a regular slice grid")) from None
    if vol is None:
        raise IngestError(case_message(case_id, path, f"segment {number} has no frames", "check the segmentation"))
    arr = np.asarray(vol.array)[..., 0]
    arr = (arr >= FRACTIONAL_THRESHOLD) if fractional else (arr > 0)
    if not arr.any():
        raise IngestError(case_message(case_id, path, f"segment {number} is empty", "check the segmentation"))
    # highdicom spatial axes (i, j, k) map to SimpleITK (x, y, z); both are LPS.
    src = sitk.GetImageFromArray(np.ascontiguousarray(arr.astype(np.uint8).transpose(2, 1, 0)))
    src.SetSpacing(tuple(float(s) for s in vol.spacing))
    src.SetOrigin(tuple(float(p) for p in vol.position))
    src.SetDirection(tuple(float(d) for d in np.asarray(vol.direction).flatten()))
    grid = sitk.Image(list(reference.size_xyz), sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in reference.spacing_mm))
    grid.SetOrigin(tuple(float(o) for o in reference.origin_mm))
    grid.SetDirection(tuple(float(d) for d in reference.direction))
    out = sitk.GetArrayFromImage(sitk.Resample(src, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    if not out.any():
        raise IngestError(case_message(case_id, path, f"segment {number} lies outside the image grid",
                                       "give the image series the segmentation was made on"))
    kept = int(out.sum()) * float(np.prod(reference.spacing_mm))
    had = int(arr.sum()) * float(np.prod(vol.spacing))
    if kept < 0.5 * had:
        logger.warning("%s: %s: only %.0f of %.0f mm3 of segment %d fall inside the image grid", case_id, path, kept, had, number)
    meta = {"path": str(path), "source": "seg", "segment_number": number, "frame_of_reference_uid": seg_for}
    return Volume(out.astype(np.uint8), reference.spacing_mm, reference.origin_mm, reference.direction, meta)
