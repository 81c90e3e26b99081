"""The bad-input catalogue: one builder per kind of broken image, mask, seed or DICOM series.

Each ``Kind`` writes real files into a folder and returns a manifest row (case_id = the kind's name) plus what
radae must say about it: the file it names, the problem and the advice (the text after "->").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

SHAPE = (16, 16, 16)


def write_image(arr: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
                vector: bool = False) -> str:
    img = sitk.GetImageFromArray(arr, isVector=vector)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


def good_arrays(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    mask = ((zz - 8) ** 2 + (yy - 7) ** 2 + (xx - 8) ** 2 <= 9).astype(np.uint8)
    img = (rng.normal(40, 20, SHAPE) + 80 * mask).astype(np.float32)
    return img, mask


def good_case(d: Path, case_id: str, rng: np.random.Generator) -> dict:
    img, mask = good_arrays(rng)
    return {"case_id": case_id, "patient_id": f"P_{case_id}", "modality": "CT", "mask_label": "1", "series_uid": None,
            "seed_x": None, "seed_y": None, "seed_z": None,
            "image": write_image(img, d / f"{case_id}_img.nii.gz"), "mask": write_image(mask, d / f"{case_id}_msk.nii.gz")}


def _patch_nifti(src: str, dst: Path, offset: int, fmt: str, value) -> str:
    raw = bytearray(Path(src).read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    dst.write_bytes(bytes(raw))
    return str(dst)


def _nrrd(path: Path, header: dict, data: bytes) -> str:
    text = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in header.items()) + "\n"
    path.write_bytes(text.encode() + data)
    return str(path)


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[Path, dict, np.random.Generator], dict]  # (folder, good row, rng) -> changed fields
    file: str  # "image" or "mask": the file the message must name
    problem: str
    advice: str


def _img(d, row):
    return sitk.GetArrayFromImage(sitk.ReadImage(row["image"]))


def _msk(d, row):
    return sitk.GetArrayFromImage(sitk.ReadImage(row["mask"]))


def _deleted(d, row, rng):
    Path(row["image"]).unlink()
    return {}


def _truncated_gz(d, row, rng):
    raw = Path(row["image"]).read_bytes()
    (d / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    return {"image": str(d / "cut.nii.gz")}


def _truncated_nii(d, row, rng):
    write_image(_img(d, row), d / "full.nii")
    (d / "cut.nii").write_bytes((d / "full.nii").read_bytes()[:5000])
    return {"image": str(d / "cut.nii")}


def _truncated_nrrd(d, row, rng):
    write_image(_img(d, row), d / "full.nrrd")
    (d / "cut.nrrd").write_bytes((d / "full.nrrd").read_bytes()[:4000])
    return {"image": str(d / "cut.nrrd")}


def _text_file(d, row, rng):
    (d / "notes.nii.gz").write_text("patient notes, not an image\n" * 20)
    return {"image": str(d / "notes.nii.gz")}


def _empty_file(d, row, rng):
    (d / "empty.nii").write_bytes(b"")
    return {"image": str(d / "empty.nii")}


def _two_d(d, row, rng):
    return {"image": write_image(_img(d, row)[8], d / "slice.nii.gz")}


def _four_d(d, row, rng):
    img = sitk.GetImageFromArray(_img(d, row))
    sitk.WriteImage(sitk.JoinSeries([img, img, img]), str(d / "dynamic.nrrd"))
    return {"image": str(d / "dynamic.nrrd")}


def _rgb(d, row, rng):
    return {"image": write_image(np.stack([_img(d, row)] * 3, -1), d / "rgb.nii.gz", vector=True)}


def _mask_size(d, row, rng):
    return {"mask": write_image(_msk(d, row)[:-1], d / "m_size.nii.gz")}


def _mask_spacing(d, row, rng):
    return {"mask": write_image(_msk(d, row), d / "m_spacing.nii.gz", spacing=(1.0, 1.0, 1.5))}


def _mask_origin(d, row, rng):
    return {"mask": write_image(_msk(d, row), d / "m_origin.nii.gz", origin=(0.0, 0.0, 5.0))}


def _mask_direction(d, row, rng):
    return {"mask": write_image(_msk(d, row), d / "m_dir.nii.gz", direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))}


def _mask_empty(d, row, rng):
    return {"mask": write_image(np.zeros(SHAPE, np.uint8), d / "m_empty.nii.gz")}


def _label_absent(d, row, rng):
    return {"mask_label": "3"}


def _label_name(d, row, rng):
    return {"mask_label": "GTV"}


def _mask_nan(d, row, rng):
    m = _msk(d, row).astype(np.float32)
    m[0, 0, 0] = np.nan
    return {"mask": write_image(m, d / "m_nan.nrrd")}


def _one_voxel_vanishes(d, row, rng):
    m = np.zeros(SHAPE, np.uint8)
    m[7, 7, 7] = 1  # between the 2 mm grid's centres (6 and 8): interpolates to 0.125 there
    return {"mask": write_image(m, d / "m_one.nii.gz")}


def _nan_nifti(d, row, rng):
    a = _img(d, row)
    a[3, 4, 5] = np.nan
    a[3, 4, 6] = np.nan
    return {"image": write_image(a, d / "nan.nii.gz")}


def _inf_nrrd(d, row, rng):
    a = _img(d, row)
    a[1, 1, 1] = np.inf
    return {"image": write_image(a, d / "inf.nrrd")}


def _constant(d, row, rng):
    return {"image": write_image(np.full(SHAPE, -1000.0, np.float32), d / "air.nii.gz")}


def _pixdim(value, axis):
    def build(d, row, rng):
        write_image(_img(d, row), d / "plain.nii")
        return {"image": _patch_nifti(str(d / "plain.nii"), d / f"pixdim{axis}.nii", 76 + 4 * axis, "<f", value)}
    return build


def _zero_spacing_nrrd(d, row, rng):
    hdr = {"type": "float", "dimension": 3, "space": "left-posterior-superior", "sizes": "16 16 16",
           "space directions": "(1,0,0) (0,1,0) (0,0,0)", "encoding": "raw", "endian": "little", "space origin": "(0,0,0)"}
    return {"image": _nrrd(d / "flat.nrrd", hdr, _img(d, row).astype("<f4").tobytes())}


def _fifty_mm(d, row, rng):
    sp = (1.0, 1.0, 50.0)
    return {"image": write_image(_img(d, row), d / "thick.nii.gz", spacing=sp),
            "mask": write_image(_msk(d, row), d / "thick_m.nii.gz", spacing=sp)}


def _huge(d, row, rng):
    hdr = {"type": "float", "dimension": 3, "sizes": "4000 4000 4000", "spacings": "1 1 1", "encoding": "raw",
           "endian": "little"}
    return {"image": _nrrd(d / "huge.nrrd", hdr, b"\0" * 4096)}


def _seed_outside(d, row, rng):
    return {"mask": None, "mask_label": None, "seed_x": 100.0, "seed_y": 0.0, "seed_z": 0.0}


def _folder_without_dicom(d, row, rng):
    (d / "scan" / "sub").mkdir(parents=True)
    (d / "scan" / "readme.txt").write_text("x")
    return {"image": str(d / "scan")}


def _mask_float_half(d, row, rng):
    return {"mask": write_image((_msk(d, row) * 0.5).astype(np.float32), d / "m_half.nii.gz")}


def _mr_constant_body(d, row, rng):
    m = _msk(d, row)
    return {"modality": "MR", "image": write_image(np.where(m > 0, 500.0, 100.0).astype(np.float32), d / "twolevel.nii.gz")}


# name, builder, file named, problem, advice
IMAGE_KINDS = [
    Kind("image_deleted_after_ingest", _deleted, "image", "image not found", "check the manifest path"),
    Kind("truncated_nii_gz", _truncated_gz, "image", "compressed data is cut off", "copy or export it again"),
    Kind("truncated_nii", _truncated_nii, "image", "NIfTI file is truncated: 4,648 of 16,384 voxel bytes", "copy or export it again"),
    Kind("truncated_nrrd", _truncated_nrrd, "image", "cannot read image", "re-export it"),
    Kind("not_an_image", _text_file, "image", "cannot read image", "re-export it"),
    Kind("empty_file", _empty_file, "image", "cannot read image", "re-export it"),
    Kind("image_2d", _two_d, "image", "image is 2D (size (16, 16))", "radae needs 3D volumes"),
    Kind("image_4d", _four_d, "image", "image is 4D (size (16, 16, 16, 3))", "split the time/channel axis"),
    Kind("image_rgb", _rgb, "image", "image has 3 components per voxel", "give a single-channel (scalar) volume"),
    Kind("mask_size_mismatch", _mask_size, "mask", "size image (16, 16, 16) vs mask (16, 16, 15)", "resample the mask onto the image"),
    Kind("mask_spacing_mismatch", _mask_spacing, "mask", "spacing image (1, 1, 1) vs mask (1, 1, 1.5) mm", "resample the mask"),
    Kind("mask_origin_mismatch", _mask_origin, "mask", "origin image (0, 0, 0) vs mask (0, 0, 5) mm", "resample the mask"),
    Kind("mask_direction_mismatch", _mask_direction, "mask", "direction image (1, 0, 0, 0, 1, 0, 0, 0, 1) vs mask (0, 1, 0",
         "resample the mask"),
    Kind("mask_empty", _mask_empty, "mask", "mask is empty (no foreground voxels)", "check the segmentation"),
    Kind("mask_label_absent", _label_absent, "mask", "label 3 not present in mask (labels present: 0, 1)", "fix mask_label"),
    Kind("mask_label_is_a_name", _label_name, "mask", "mask_label 'GTV' is not an integer label", "give the label's number"),
    Kind("mask_nan", _mask_nan, "mask", "mask has 1 NaN/inf voxels", "a mask must hold integer labels"),
    Kind("one_voxel_lesion_vanishes", _one_voxel_vanishes, "mask", "lesion (1 voxels) vanishes when resampled to (2.0, 2.0, 2.0) mm",
         "use a finer preprocess.spacing_mm or mask_interpolation: nearest"),
    Kind("nan_voxels_nifti", _nan_nifti, "image", "image has 2 NaN/inf voxels", "fix or mask them"),
    Kind("inf_voxels_nrrd", _inf_nrrd, "image", "image has 1 NaN/inf voxels", "fix or mask them"),
    Kind("constant_image", _constant, "image", "image is constant (all voxels = -1000)", "check the file is the intended scan"),
    Kind("zero_spacing_nifti", _pixdim(0.0, 3), "image", "invalid voxel size (pixdim (1, 1, 0) mm", "fix the file header"),
    Kind("negative_spacing_nifti", _pixdim(-1.0, 2), "image", "invalid voxel size (pixdim (1, -1, 1) mm", "fix the file header"),
    Kind("zero_spacing_nrrd", _zero_spacing_nrrd, "image", "invalid voxel spacing in the header", "fix the file header"),
    Kind("spacing_50mm", _fifty_mm, "image", "implausible voxel spacing (1, 1, 50) mm", "fix the file header (units?)"),
    Kind("huge_volume", _huge, "image", "volume has 64,000,000,000 voxels, above preprocess.max_voxels",
         "crop the volume around the lesion"),
    Kind("seed_outside_image", _seed_outside, "image", "seed point [100.0, 0.0, 0.0] mm lies outside the image", "check sign and units"),
    Kind("folder_without_dicom", _folder_without_dicom, "image", "no DICOM files directly in this folder", "point the manifest at the folder"),
    Kind("mr_constant_body", _mr_constant_body, "image", "intensities are constant in the body region", "mr_region: volume"),
    # issue 15 (was "label 1 not present (labels present: 0, 0)")
    Kind("mask_float_half", _mask_float_half, "mask", "mask holds non-integer values (0.5; float32 voxels)",
         "threshold it (e.g. >= 0.5)"),
]


# ----------------------------------------------------------------------------- issue 15 (part B) and issue 13
@dataclass(frozen=True)
class Defect:
    """A kind of input that went wrong before a fix: how (``was``), what radae does now, and the test that holds it."""

    name: str
    was: str  # "silently wrong" | "crash" (the whole cohort stopped) | "unclear message"
    now: str  # "clear error" | "failures.csv row" | "correct" | "correct, with a warning"
    test: str  # test function in tests/reliability/test_issue15_crashes.py


ISSUE15_B_KINDS = [
    Defect("case_ids_sort_unlike_patient_ids", "crash", "correct", "test_case_ids_that_sort_unlike_patient_ids_are_extracted_in_table_order"),
    Defect("image_file_missing_at_run", "crash", "failures.csv row", "test_missing_files_and_symlink_loops_are_failure_rows_and_the_rest_runs"),
    Defect("mask_symlink_loop", "crash", "failures.csv row", "test_missing_files_and_symlink_loops_are_failure_rows_and_the_rest_runs"),
    Defect("file_deleted_between_validate_and_run", "crash", "failures.csv row", "test_a_file_deleted_between_validate_and_run_is_a_failure_row"),
    Defect("unsupported_modality_spect", "crash", "clear error (validate); failures.csv row (extract)",
           "test_an_unsupported_modality_is_one_failure_row_in_extract_not_a_dead_cohort"),
    Defect("alias_bomb_in_pyradiomics_params", "crash", "clear error", "test_an_alias_bomb_in_the_pyradiomics_parameter_file_is_refused_at_validate"),
    Defect("kill_9_during_parallel_preprocess", "crash", "correct", "test_preprocess_pool_workers_die_with_a_killed_parent_and_free_the_run_lock"),
    Defect("run_lock_of_a_dead_holder", "crash", "correct, with a warning", "test_a_run_lock_whose_holder_pid_is_dead_is_taken_over"),
    Defect("mask_float_half", "unclear message", "clear error", "test_a_float_mask_of_halves_says_it_holds_non_integer_values"),
    Defect("override_without_key", "unclear message", "clear error", "test_an_override_without_a_key_is_named"),
    Defect("seed_negative", "unclear message", "clear error", "test_impossible_seeds_are_refused_by_validate"),
    Defect("seed_above_2_32", "unclear message", "clear error", "test_impossible_seeds_are_refused_by_validate"),
    Defect("nan_or_inf_in_config", "unclear message", "clear error", "test_non_finite_numbers_in_the_config_are_refused_at_load"),
    Defect("disk_full_in_a_nested_table_writer", "unclear message", "clear error",
           "test_a_full_disk_names_the_table_that_could_not_be_written_and_closes_its_files"),
    Defect("disk_full_while_copying", "unclear message", "clear error", "test_a_copy_onto_a_full_disk_names_the_destination_not_the_source"),
    Defect("sigint_during_a_stage", "unclear message", "clear error", "test_sigint_marks_the_stage_interrupted_with_a_message"),
    Defect("mask_flipped_same_space", "unclear message", "correct, with a warning",
           "test_a_mask_flipped_along_x_over_the_same_voxels_is_moved_onto_the_image_grid_and_recorded"),
    # issue 13
    Defect("table_writer_flush_fails", "crash", "clear error", "test_a_full_disk_names_the_table_that_could_not_be_written_and_closes_its_files"),
    Defect("dicom_patient_id_unreadable", "silently wrong", "clear error", "test_manifest_scan_refuses_an_unreadable_patient_id"),
]


# ----------------------------------------------------------------------------- issue 15 (part C): more kinds
def _mask_2d(d, row, rng):
    return {"mask": write_image(_msk(d, row)[8], d / "m_slice.nii.gz")}


def _body_ct(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """An int16 CT in HU: air around a water-like body, a brighter lesion, noise (thousands of distinct values)."""
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    body = (yy - 7.5) ** 2 + (xx - 7.5) ** 2 <= 49
    hu = np.where(body, 20.0, -1000.0) + 60 * mask + rng.normal(0, 250, SHAPE)
    return np.round(np.clip(hu, -1024, 3071)).astype(np.int16)


def _mask_is_ct(d, row, rng):
    ct = _body_ct(rng, _msk(d, row))
    return {"image": write_image(ct, d / "ct.nii.gz"), "mask": write_image(ct, d / "ct_copy.nii.gz")}


def _mask_is_image(d, row, rng):
    return {"mask": row["image"]}


def _image_is_mask(d, row, rng):  # the image and mask columns swapped: the scan given as mask is refused too late
    return {"image": write_image(_msk(d, row), d / "lesion_seg.nii.gz")}


def _mhd(d, row, keep_bytes=None, drop=False):
    write_image(_img(d, row), d / "scan.mhd")
    raw = d / "scan.raw"
    if drop:
        raw.unlink()
    elif keep_bytes is not None:
        raw.write_bytes(raw.read_bytes()[:keep_bytes])
    return {"image": str(d / "scan.mhd")}


def _mha_cut(d, row, rng):
    write_image(_img(d, row), d / "full.mha")
    raw = (d / "full.mha").read_bytes()
    (d / "cut.mha").write_bytes(raw[: len(raw) - 8000])
    return {"image": str(d / "cut.mha")}


# refused with one line (case, file, problem -> advice); Defect entries below say how each was handled before
MORE_IMAGE_KINDS = [
    Kind("mask_2d_for_3d_image", _mask_2d, "mask", "mask is 2D (size (16, 16))", "radae needs 3D volumes"),
    Kind("mask_is_an_int16_ct", _mask_is_ct, "mask",
         "mask holds 1,327 distinct values (-1024 to 806): an intensity image (the scan itself?), not a label map",
         "point the manifest's mask at the segmentation file"),
    Kind("mask_is_the_image_file", _mask_is_image, "mask", "mask is the image file itself",
         "point the manifest's mask at the segmentation file"),
    Kind("image_is_a_binary_mask", _image_is_mask, "image", "image holds only the values 0 and 1: a mask, not a scan",
         "check the manifest's image and mask columns are not swapped"),
    Kind("mhd_without_its_raw", lambda d, row, rng: _mhd(d, row, drop=True), "image",
         "pixel data file {d}/scan.raw (ElementDataFile) does not exist", "copy scan.raw next to the header scan.mhd"),
    Kind("mhd_raw_cut_off", lambda d, row, rng: _mhd(d, row, keep_bytes=1000), "image",
         "pixel data file {d}/scan.raw holds 1,000 of 16,384 bytes", "copy or export it again"),
    Kind("mha_truncated", _mha_cut, "image", "MetaImage file is truncated: 8,384 of 16,384 pixel bytes", "copy or export it again"),
]


def _nifti_4d_t1(d, row, rng):
    img = sitk.JoinSeries([sitk.GetImageFromArray(_img(d, row))])
    sitk.WriteImage(img, str(d / "t1.nii.gz"))
    return {"image": str(d / "t1.nii.gz")}, {}


def _mask_minus_one(d, row, rng):
    m = np.where(_msk(d, row) > 0, 1, -1).astype(np.int16)
    return {"mask": write_image(m, d / "m_neg.nii.gz")}, {}


def _scl_intercept(d, row, rng):
    hu = np.round(_img(d, row)).astype(np.int16)
    write_image((hu + 1024).astype(np.int16), d / "stored.nii")
    raw = bytearray((d / "stored.nii").read_bytes())
    struct.pack_into("<ff", raw, 112, 1.0, -1024.0)  # scl_slope, scl_inter
    (d / "scaled.nii").write_bytes(bytes(raw))
    return {"image": str(d / "scaled.nii")}, {"image": write_image(hu, d / "hu.nii.gz")}


def _nrrd_ras(d, row, rng):
    # the same voxels described in RAS: x and y axes point the other way, so the LPS direction is diag(1, 1, 1)
    hdr = {"type": "float", "dimension": 3, "space": "right-anterior-superior", "sizes": "16 16 16",
           "space directions": "(-1,0,0) (0,-1,0) (0,0,1)", "encoding": "raw", "endian": "little", "space origin": "(0,0,0)"}
    return {"image": _nrrd(d / "ras.nrrd", hdr, _img(d, row).astype("<f4").tobytes())}, {}


def _nrrd_big_endian(d, row, rng):
    hdr = {"type": "float", "dimension": 3, "space": "left-posterior-superior", "sizes": "16 16 16",
           "space directions": "(1,0,0) (0,1,0) (0,0,1)", "encoding": "raw", "endian": "big", "space origin": "(0,0,0)"}
    return {"image": _nrrd(d / "be.nrrd", hdr, _img(d, row).astype(">f4").tobytes())}, {}


def _plain_named_gz(d, row, rng):
    write_image(_img(d, row), d / "plain.nii")
    (d / "plain_named.nii.gz").write_bytes((d / "plain.nii").read_bytes())
    return {"image": str(d / "plain_named.nii.gz")}, {}


# read correctly: (folder, good row, rng) -> (changed fields, fields of the reference row whose ROI it must equal)
CORRECT_IMAGE_KINDS = {
    "nifti_4d_with_one_time_point": _nifti_4d_t1,
    "mask_background_minus_one": _mask_minus_one,
    "nifti_int16_with_scl_inter": _scl_intercept,
    "nrrd_in_ras_space": _nrrd_ras,
    "nrrd_big_endian": _nrrd_big_endian,
    "uncompressed_nifti_named_nii_gz": _plain_named_gz,
    "mask_label_written_1_0": lambda d, row, rng: ({"mask_label": "1.0"}, {}),
}

HDR = ["case_id", "patient_id", "image", "mask", "mask_label", "modality", "os_time", "os_event"]
ROWS = [["A", "PA", "data/A_img.nii.gz", "data/A_msk.nii.gz", "1", "CT", "10.5", "1"],
        ["B", "PB", "data/B_img.nii.gz", "data/B_msk.nii.gz", "1", "CT", "3", "0"]]


def csv_bytes(rows=None, header=HDR, sep=",", newline="\n", encoding="utf-8") -> bytes:
    rows = ROWS if rows is None else rows
    return (newline.join(sep.join(r) for r in [header] + rows) + newline).encode(encoding)


def _edited(i, j, value, **kw):
    rows = [list(r) for r in ROWS]
    rows[i][j] = value
    return csv_bytes(rows, **kw)


def _xlsx() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return buf.getvalue()


# manifest files refused by ``radae validate``: (name, bytes, file suffix, problem, advice)
MANIFEST_FILE_KINDS = [
    ("manifest_latin1", _edited(0, 1, "Müller José", encoding="latin-1"), ".csv",
     "is not UTF-8 text (byte 0xfc on line 2; a Latin-1 or Windows-1252 export?)", "save it as 'CSV UTF-8'"),
    ("manifest_utf16", b"\xff\xfe" + csv_bytes(encoding="utf-16-le"), ".csv", "is UTF-16 text (Excel 'Unicode Text')",
     "save it as 'CSV UTF-8 (comma delimited)'"),
    ("manifest_xlsx_workbook", _xlsx(), ".xlsx", "is a ZIP archive (an Excel .xlsx workbook?), not CSV text",
     "export it as 'CSV UTF-8 (comma delimited)'"),
    ("manifest_semicolons", csv_bytes(sep=";"), ".csv", "columns are separated by ';', not commas",
     "save it as comma-separated CSV"),
    ("manifest_tabs", csv_bytes(sep="\t"), ".csv", "columns are separated by tabs, not commas", "save it as comma-separated CSV"),
    ("manifest_nul_byte", csv_bytes().replace(b"PA", b"P\x00A"), ".csv", "holds a NUL byte (line 2)",
     "re-export it as CSV UTF-8 text"),
    ("manifest_duplicate_column", csv_bytes([r + ["99"] for r in ROWS], header=HDR + ["os_time"]), ".csv",
     "column(s) ['os_time'] appear more than once", "keep one column per name"),
    ("manifest_row_with_extra_cell", csv_bytes(ROWS + [["C", "PC", "c.nii.gz", "c_m.nii.gz", "1", "CT", "3", "0", "x"]]), ".csv",
     "cannot parse (Error tokenizing data. C error: Expected 8 fields in line 4, saw 9)", 'quote cells that contain commas'),
    ("manifest_line_break_in_id", csv_bytes(ROWS[:1] + [["B", '"PB\n2"'] + ROWS[1][2:]]), ".csv",
     "row 3 (case 'B'): patient_id 'PB\\n2' holds a line break or control character", "remove it"),
    ("manifest_decimal_comma", _edited(0, 6, '"10,5"'), ".csv",
     "row 2 (case A): os_time = '10,5' has a comma: a decimal comma or a thousands separator?",
     "write numbers with a decimal point and no grouping"),
]

# read correctly by the manifest loader: (name, bytes, {column: expected values})
MANIFEST_CORRECT_KINDS = [
    ("manifest_bom_and_crlf", b"\xef\xbb\xbf" + csv_bytes(newline="\r\n"), {"case_id": ["A", "B"], "os_time": [10.5, 3.0]}),
    ("manifest_trailing_empty_rows", csv_bytes() + b",,,,,,,\n,,,,,,,\n", {"case_id": ["A", "B"], "os_event": [1.0, 0.0]}),
    ("manifest_patient_id_leading_zeros", _edited(0, 1, "007"), {"patient_id": ["007", "PB"]}),
    ("manifest_patient_id_NA", _edited(0, 1, "NA"), {"patient_id": ["NA", "PB"]}),
]

# how each part-C kind was handled before (tests in tests/reliability/test_catalogue_more.py)
_T_IMG, _T_OK, _T_MAN, _T_MOK = ("test_more_image_and_mask_kinds", "test_more_kinds_read_correctly",
                                 "test_manifest_file_kinds_through_validate", "test_manifest_kinds_read_correctly")
ISSUE15_C_KINDS = [
    Defect("mask_2d_for_3d_image", "correct from the start", "clear error", _T_IMG),
    Defect("mask_is_an_int16_ct", "silently wrong", "clear error", _T_IMG),
    Defect("mask_is_the_image_file", "unclear message", "clear error", _T_IMG),
    Defect("image_is_a_binary_mask", "silently wrong", "clear error", _T_IMG),
    Defect("mhd_without_its_raw", "unclear message", "clear error", _T_IMG),
    Defect("mhd_raw_cut_off", "unclear message", "clear error", _T_IMG),
    Defect("mha_truncated", "unclear message", "clear error", _T_IMG),
    *[Defect(name, "correct from the start", "correct", _T_OK) for name in CORRECT_IMAGE_KINDS],
    Defect("manifest_latin1", "unclear message", "clear error", _T_MAN),
    Defect("manifest_utf16", "unclear message", "clear error", _T_MAN),
    Defect("manifest_xlsx_workbook", "unclear message", "clear error", _T_MAN),
    Defect("manifest_semicolons", "unclear message", "clear error", _T_MAN),
    Defect("manifest_tabs", "unclear message", "clear error", _T_MAN),
    Defect("manifest_nul_byte", "silently wrong", "clear error", _T_MAN),
    Defect("manifest_duplicate_column", "silently wrong", "clear error", _T_MAN),
    Defect("manifest_row_with_extra_cell", "unclear message", "clear error", _T_MAN),
    Defect("manifest_line_break_in_id", "silently wrong", "clear error", _T_MAN),
    Defect("manifest_decimal_comma", "unclear message", "clear error", _T_MAN),
    Defect("manifest_bom_and_crlf", "correct from the start", "correct", _T_MOK),
    Defect("manifest_trailing_empty_rows", "valid input refused", "correct", _T_MOK),
    Defect("manifest_patient_id_leading_zeros", "correct from the start", "correct", _T_MOK),
    Defect("manifest_patient_id_NA", "correct from the start", "correct", _T_MOK),
]
