"""Small real DICOM files for tests: CT series, RTSTRUCTs and modified copies, written with pydicom."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def _new_dataset(sop_class: str, modality: str) -> Dataset:
    """A dataset with its file meta, a fresh SOP instance UID, its SOP class and modality."""
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.Modality = modality
    return ds


def write_ct_series(
    folder: Path,
    array_zyx: np.ndarray,
    pixel_spacing=(0.8, 0.6),  # DICOM order: (between rows, between columns)
    origin=(-10.0, 20.0, 30.0),
    row_cosine=(1.0, 0.0, 0.0),
    col_cosine=(0.0, 1.0, 0.0),
    slice_gaps_mm=None,  # len z-1; default 2.5 mm each
    series_uid: str | None = None,
    frame_uid: str | None = None,
    description: str = "synthetic",
    shuffle_seed: int | None = 0,
    tilt_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    patient: tuple[str, str, str] = ("Test^Patient", "TEST001", ""),  # PatientName, PatientID, PatientBirthDate
) -> list[Dataset]:
    """Write ``array_zyx`` (int16) as one CT slice per file; slice k is array_zyx[k].

    Files get shuffled names so that reading must sort by position. ``tilt_shift_mm`` is added per
    slice index to the position (shears the stack, as a gantry tilt does). Returns the datasets in
    slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    nz, rows, cols = array_zyx.shape
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    study_uid = generate_uid()
    r, c = np.asarray(row_cosine, float), np.asarray(col_cosine, float)
    normal = np.cross(r, c)
    gaps = np.full(nz - 1, 2.5) if slice_gaps_mm is None else np.asarray(slice_gaps_mm, float)
    along = np.concatenate([[0.0], np.cumsum(gaps)])
    order = np.random.default_rng(shuffle_seed).permutation(nz) if shuffle_seed is not None else np.arange(nz)
    out = []
    for k in range(nz):
        ds = _new_dataset(CT_IMAGE_STORAGE, "CT")
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient
        ds.PatientSex = ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", "", ""
        ds.Manufacturer, ds.SeriesNumber = "radae tests", 1
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.InstanceNumber = int(order[k]) + 1
        pos = np.asarray(origin, float) + along[k] * normal + k * np.asarray(tilt_shift_mm, float)
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.ImageOrientationPatient = [float(v) for v in (*r, *c)]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = float(gaps.mean()) if len(gaps) else 1.0
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(array_zyx[k], dtype=np.int16).tobytes()
        ds.save_as(folder / f"IMG_{order[k]:04d}.dcm", enforce_file_format=True)
        out.append(ds)
    return out


def pixel_to_physical(ds: Dataset, col: float, row: float) -> np.ndarray:
    """Centre of pixel (col, row) of slice ``ds`` in LPS mm (DICOM PixelSpacing = [row gap, column gap])."""
    o = np.asarray(ds.ImageOrientationPatient, float)
    ps = np.asarray(ds.PixelSpacing, float)
    return np.asarray(ds.ImagePositionPatient, float) + col * ps[1] * o[:3] + row * ps[0] * o[3:]


def write_rtstruct(
    path: Path,
    slices: list[Dataset],
    rois: dict[str, list[tuple[int, list[tuple[float, float]]]]],
    with_image_refs: bool = True,
    referenced_series_uid: str | None = None,
) -> Dataset:
    """RTSTRUCT with ROIs ``{name: [(slice index, [(col, row), ...]), ...]}`` (polygons in pixel units)."""
    first = slices[0]
    ds = _new_dataset(RTSTRUCT_STORAGE, "RTSTRUCT")
    ds.PatientName, ds.PatientID = first.PatientName, first.PatientID
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"
    fr = Dataset()
    fr.FrameOfReferenceUID = first.FrameOfReferenceUID
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = referenced_series_uid or first.SeriesInstanceUID
    items = []
    for s in slices:
        it = Dataset()
        it.ReferencedSOPClassUID = s.SOPClassUID
        it.ReferencedSOPInstanceUID = s.SOPInstanceUID
        items.append(it)
    series.ContourImageSequence = Sequence(items)
    study.RTReferencedSeriesSequence = Sequence([series])
    fr.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
    ss, rc, obs = [], [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ss.append(roi)
        cs = []
        for k, poly in contours:
            ct = Dataset()
            pts = np.array([pixel_to_physical(slices[k], c, r) for c, r in poly])
            ct.ContourGeometricType = "CLOSED_PLANAR"
            ct.NumberOfContourPoints = len(pts)
            ct.ContourData = [float(v) for v in pts.ravel()]
            if with_image_refs:
                ref = Dataset()
                ref.ReferencedSOPClassUID = slices[k].SOPClassUID
                ref.ReferencedSOPInstanceUID = slices[k].SOPInstanceUID
                ct.ContourImageSequence = Sequence([ref])
            cs.append(ct)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0]
        item.ContourSequence = Sequence(cs)
        rc.append(item)
        ob = Dataset()
        ob.ObservationNumber = number
        ob.ReferencedROINumber = number
        ob.RTROIInterpretedType = "GTV"
        ob.ROIInterpreter = ""
        obs.append(ob)
    ds.StructureSetROISequence = Sequence(ss)
    ds.ROIContourSequence = Sequence(rc)
    ds.RTROIObservationsSequence = Sequence(obs)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def copy_slices(src_files: list[Path], dst: Path, series_uid: str | None = None, new_sop_uids: bool = False,
                description: str | None = None) -> list[Path]:
    """Copy DICOM files into ``dst``, optionally giving them another series UID / new SOP UIDs."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for f in src_files:
        ds = pydicom.dcmread(str(f))
        if series_uid:
            ds.SeriesInstanceUID = series_uid
        if new_sop_uids:
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if description is not None:
            ds.SeriesDescription = description
        target = dst / (f.stem + ("_b" if series_uid else "") + ".dcm")
        ds.save_as(target)
        out.append(target)
    return out


def sorted_ibsi_files(image_folder: Path) -> list[Path]:
    """IBSI CT phantom slice files sorted by position along the normal (the NIfTI z order)."""
    files = sorted(image_folder.glob("*.dcm"))

    def along(f: Path) -> float:
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        o = np.asarray(ds.ImageOrientationPatient, float)
        return float(np.cross(o[:3], o[3:]) @ np.asarray(ds.ImagePositionPatient, float))

    return sorted(files, key=along)


def write_seg(path: Path, source: list[Dataset], masks: dict[str, np.ndarray], fractional: bool = False) -> None:
    """DICOM SEG (highdicom) with one segment per ``{label: (z, y, x) array}``; frame k <-> source[k]."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descs = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, label in enumerate(masks, start=1)
    ]
    stacked = np.stack(list(masks.values()), axis=-1)
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=stacked.astype(np.float32) if fractional else stacked.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="radae", manufacturer_model_name="radae tests", software_versions="0", device_serial_number="0",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
