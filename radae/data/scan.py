"""Build a manifest from a folder: NIfTI/NRRD/MHA image + mask pairs, or DICOM series with RTSTRUCT/SEG.

``scan_folder(root, out)`` walks ``root`` and writes one row per lesion (see radae.data.manifest for the
columns); paths are written relative to the manifest's folder (absolute when the data lies more than
two folders up from it). It is a starting point: check the ``modality`` column (guessed from file
names for NIfTI) and drop structures that are not lesions.

Pairing rules for image files:

- a file is a mask if a token of its name or of its folder name says so (``mask``, ``label``, ``seg``,
  ``roi``, ``gtv``, ...; ``labelsTr``/``masks`` folders too), otherwise an image;
- a mask pairs with the image in the same (or parallel ``images``/``masks``) folder whose name is the
  same once image/mask tokens are removed (``MR_T1_image`` + ``MR_T1_mask``, ``ct`` + ``ct_seg``,
  ``images/p01`` + ``masks/p01``, nnU-Net ``p01_0000`` + ``p01``); failing that, with the only image
  left in its folder (``phantom`` + ``mask``);
- a mask with several labels gives one row per label (``mask_label``); images without a mask are
  left out (logged).

DICOM: every RTSTRUCT ROI (optionally filtered by ``roi_pattern``) and every SEG segment becomes a row
with the series folder it refers to as ``image`` and its ``series_uid``. ``patient_id`` is the DICOM
PatientID (use ``data.pseudonymise_patients`` to hash it at load time); an empty PatientID falls back to
the first folder below ``root`` with a warning, and an unreadable one stops the scan (patient grouping decides the
folds, so it never changes silently).

``radae manifest examples [--out data_manifests]`` regenerates the example manifests for the
shared real data (``data_manifests/*.csv``) with paths written as ``${RADAE_DATA}/...``.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radae.util.errors import IngestError, ManifestError, RadaeError
from radae.util.fsutil import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

COLUMNS = ["case_id", "patient_id", "image", "mask", "mask_label", "seed_x", "seed_y", "seed_z", "modality", "series_uid"]
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MASK_TOKENS = frozenset({"mask", "masks", "label", "labels", "labelmap", "seg", "segmentation", "roi", "gtv", "contour"})
IMAGE_TOKENS = frozenset({"image", "images", "img", "imgs", "scan", "volume", "vol"})
MODALITY_TOKENS = {
    "CT": {"ct", "cect", "hu"},
    "MR": {"mr", "mri", "t1", "t2", "t1w", "t2w", "flair", "dwi", "adc", "t1c", "t1ce"},
    "PET": {"pet", "pt", "suv", "fdg"},
}
DICOM_MODALITY = {"PT": "PET", "MR": "MR", "CT": "CT"}
MAX_LABELS = 50
MAX_UP = 2  # relative paths climb at most this many folders; farther data gets absolute paths
_MASK_DIR = re.compile(r"^(masks?|labels?|segs?|segmentations?|labelmaps?|rois?)(tr|ts|va|val|test|train)?$", re.I)
_IMAGE_DIR = re.compile(r"^(images?|imgs?|scans?|volumes?)(tr|ts|va|val|test|train)?$", re.I)
_CHANNEL = re.compile(r"_\d{4}$")


# ----------------------------------------------------------------------------- names
def _stem(path: Path) -> str:
    name = path.name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _safe_id(*parts: str) -> str:
    text = "_".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(IMAGE_SUFFIXES)


def _is_mask(path: Path) -> bool:
    return bool(set(_tokens(_stem(path))) & MASK_TOKENS) or bool(_MASK_DIR.match(path.parent.name))


def _group_dir(path: Path, root: Path) -> tuple[str, ...]:
    """Folder of a file relative to root, with images/masks folders folded together (parallel layouts)."""
    parts = path.parent.relative_to(root).parts
    return tuple("*" if (_MASK_DIR.match(p) or _IMAGE_DIR.match(p)) else p for p in parts)


def _name_parts(path: Path, image: bool) -> list[str]:
    """Name tokens (original case) without image/mask words: ``MR_T1_image`` -> ``["MR", "T1"]``."""
    stem = _stem(path)
    if image and _IMAGE_DIR.match(path.parent.name):
        stem = _CHANNEL.sub("", stem)  # nnU-Net channel suffix
    words = [t for t in re.split(r"[^A-Za-z0-9]+", stem) if t]
    return [t for t in words if t.lower() not in MASK_TOKENS and t.lower() not in IMAGE_TOKENS]


def _key(path: Path, image: bool) -> tuple[str, ...]:
    return tuple(t.lower() for t in _name_parts(path, image))


def guess_modality(*names: str) -> str:
    """CT / MR / PET from name tokens, else ``UNKNOWN``."""
    toks = {t for n in names for t in _tokens(n)}
    hits = [m for m, words in MODALITY_TOKENS.items() if toks & words]
    return hits[0] if len(hits) == 1 else "UNKNOWN"


# ----------------------------------------------------------------------------- NIfTI pairs
def _mask_labels(path: Path) -> list[int | None]:
    try:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError:
        logger.warning("%s: mask cannot be read; left out", path)
        return []
    values = np.unique(arr[arr != 0])
    if values.size == 0:
        logger.warning("%s: mask is empty; left out", path)
        return []
    if values.size > MAX_LABELS or not np.all(np.equal(np.mod(values, 1), 0)):
        return [None]  # not a label map: any non-zero voxel
    return [int(v) for v in values]


def _pair_files(root: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    files = sorted(p for p in root.rglob("*") if _is_image_file(p))
    masks = [p for p in files if _is_mask(p)]
    images = [p for p in files if not _is_mask(p)]
    by_key: dict[tuple, list[Path]] = {}
    for im in images:
        by_key.setdefault((_group_dir(im, root), _key(im, True)), []).append(im)
    pairs, used = [], set()
    pending = []
    for m in masks:
        hits = [im for im in by_key.get((_group_dir(m, root), _key(m, False)), []) if im not in used]
        if len(hits) == 1:
            pairs.append((hits[0], m))
            used.add(hits[0])
        else:
            pending.append(m)
    for m in pending:  # fallback: the only image left in the mask's folder
        left = [im for im in images if im not in used and _group_dir(im, root) == _group_dir(m, root)]
        if len(left) == 1:
            pairs.append((left[0], m))
            used.add(left[0])
        else:
            logger.warning("%s: no matching image (%d candidates in its folder); left out", m, len(left))
    return sorted(pairs), [im for im in images if im not in used]


def _nifti_rows(root: Path) -> list[dict]:
    pairs, unpaired = _pair_files(root)
    if unpaired:
        logger.warning("%d image(s) without a mask left out, e.g. %s", len(unpaired), unpaired[0])
    rows = []
    for image, mask in pairs:
        rel = image.relative_to(root).parts
        nested = len(rel) > 1 and not _IMAGE_DIR.match(rel[0]) and not _MASK_DIR.match(rel[0])
        key = "_".join(_name_parts(image, True)) or _safe_id(_stem(image))
        patient = rel[0] if nested else key
        modality = guess_modality(_stem(image), *image.relative_to(root).parts[:-1])
        labels = _mask_labels(mask)
        for lab in labels:
            case = _safe_id(patient, key if key.lower() != patient.lower() else "",
                            f"l{lab}" if len(labels) > 1 else "")
            rows.append({"case_id": case, "patient_id": patient, "image": str(image), "mask": str(mask),
                         "mask_label": lab, "modality": modality, "series_uid": None})
    if any(r["modality"] == "UNKNOWN" for r in rows):
        logger.warning("modality could not be guessed from some file names; edit the 'modality' column (CT/MR/PET)")
    return rows


# ----------------------------------------------------------------------------- DICOM
def _patient_id(path: Path, root: Path) -> str:
    import pydicom

    try:
        pid = str(pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID", "")).strip()
    except Exception as e:  # noqa: BLE001 - any pydicom failure: the grouping must not change silently
        raise ManifestError(f"file {path}: cannot read its PatientID ({type(e).__name__}), so its series cannot be "
                            "given a patient -> fix or remove the file, or write the manifest's patient_id by hand") from None
    if pid:
        return pid
    rel = path.relative_to(root).parts
    fallback = rel[0] if len(rel) > 1 else "patient"
    logger.warning("file %s: no PatientID; patient_id %r is taken from the folder name -> check the patient grouping "
                   "in the manifest", path, fallback)
    return fallback


def _dicom_rows(root: Path, roi_pattern: str | None) -> list[dict]:
    from radae.io.dicom import list_objects, list_series
    from radae.io.rtstruct import read_rtstruct, referenced_series_uids, roi_names
    from radae.io.seg import read_seg, segments

    series_at: dict[str, tuple[Path, object]] = {}
    by_for: dict[str, list[str]] = {}
    structures: list[tuple[str, Path]] = []
    for folder in sorted({p.parent for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}):
        headers = list_objects(folder)
        for s in list_series(folder, headers):
            series_at[s.uid] = (folder, s)
            by_for.setdefault(s.slices[0].frame_of_reference_uid, []).append(s.uid)
        structures += [(h.modality, h.path) for h in headers if h.modality in ("RTSTRUCT", "SEG")]
    pattern = re.compile(roi_pattern, re.I) if roi_pattern else None
    rows, used = [], set()
    for kind, path in structures:
        try:
            if kind == "RTSTRUCT":
                ds = read_rtstruct(path)
                refs = referenced_series_uids(ds)
                fors = {str(fr.get("FrameOfReferenceUID", "")) for fr in ds.get("ReferencedFrameOfReferenceSequence", [])}
                labels = [(n, n) for n in roi_names(ds) if pattern is None or pattern.search(n)]
            else:
                seg = read_seg(path)
                refs = {str(s.SeriesInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])}
                fors = {str(seg.get("FrameOfReferenceUID", ""))}
                labels = [(n, lab) for n, lab in segments(seg) if pattern is None or pattern.search(lab)]
        except RadaeError as e:
            logger.warning("%s", e)
            continue
        uids = [u for u in refs if u in series_at] or sorted({u for f in fors - {""} for u in by_for.get(f, [])})
        if len(uids) != 1:
            logger.warning("%s: %s refers to %s; found %d matching image series under %s; left out", path, kind,
                           ", ".join(sorted(refs)) or "no series", len(uids), root)
            continue
        folder, series = series_at[uids[0]]
        used.add(uids[0])
        patient = _patient_id(series.slices[0].path, root)
        modality = DICOM_MODALITY.get(series.modality, series.modality or "UNKNOWN")
        for label, text in labels:
            rows.append({"case_id": _safe_id(patient, modality, str(text)), "patient_id": patient, "image": str(folder),
                         "mask": str(path), "mask_label": label, "modality": modality, "series_uid": uids[0]})
    left = sorted(set(series_at) - used)
    if left:
        logger.warning("%d DICOM image series without RTSTRUCT/SEG left out, e.g. %s", len(left), series_at[left[0]][0])
    return rows


# ----------------------------------------------------------------------------- public
def scan_rows(root: str | Path, roi_pattern: str | None = None) -> pd.DataFrame:
    """Manifest rows (absolute paths) for everything pairable under ``root``; see the module docstring."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ManifestError(f"folder {root}: not found -> give the folder to scan")
    rows = _nifti_rows(root) + _dicom_rows(root, roi_pattern)
    if not rows:
        raise ManifestError(f"folder {root}: no image/mask pairs and no DICOM series with RTSTRUCT/SEG found "
                            "-> masks need 'mask'/'label'/'seg' in their name or folder; see radae.data.scan")
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    seen: dict[str, int] = {}
    ids = []
    for case in df["case_id"]:
        seen[case] = seen.get(case, 0) + 1
        ids.append(case if seen[case] == 1 else f"{case}_{seen[case]}")
    df["case_id"] = ids
    return df[COLUMNS].sort_values("case_id", kind="stable").reset_index(drop=True)


def _write_table(df: pd.DataFrame, out: Path) -> None:
    if out.suffix.lower() in (".parquet", ".pq"):
        with atomic_path(out, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    else:
        atomic_write_text(out, df.to_csv(index=False))


def _portable(path: str, base: Path) -> str:
    """Path relative to the manifest folder when the data sits near it (<= 2 levels up), else absolute."""
    rel = os.path.relpath(path, base)
    return rel if Path(rel).parts[: MAX_UP + 1].count("..") <= MAX_UP else str(path)


def scan_folder(root: str | Path, out: str | Path, roi_pattern: str | None = None) -> pd.DataFrame:
    """Scan ``root`` and write the manifest to ``out`` (CSV, or Parquet by suffix); paths relative to ``out``'s folder."""
    out = Path(out).expanduser().resolve()
    df = scan_rows(root, roi_pattern)
    for col in ("image", "mask"):
        df[col] = [None if p is None else _portable(p, out.parent) for p in df[col]]
    _write_table(df, out)
    logger.info("wrote %d rows (%d patients) to %s", len(df), df["patient_id"].nunique(), out)
    return df


# ----------------------------------------------------------------------------- shared data manifests
STS_CLINICAL = {  # manifest column <- clinical_shared.csv column (numeric codings for the benchmark)
    "LungMets": "LungMets",
    "os_time_days": "os_time_days",
    "os_event": "os_event",
    "age": "Age",
}
GRADE = {"low": 1, "intermediate": 2, "high": 3}


def _with_data_root(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    df = df.copy()
    prefix = str(root.resolve())
    for col in ("image", "mask"):
        df[col] = ["${RADAE_DATA}" + p[len(prefix):] if p and p.startswith(prefix) else p for p in df[col]]
    return df


def sts_clinical(root: Path) -> pd.DataFrame:
    """Outcomes and a few clinical covariates per STS patient, numerically coded, indexed by patient_id."""
    path = root / "sts" / "clinical_shared.csv"
    raw = pd.read_csv(path)
    out = pd.DataFrame({"patient_id": raw["Patient ID"].astype(str).str.strip()})
    for col, src in STS_CLINICAL.items():
        out[col] = pd.to_numeric(raw[src], errors="raise")
    for col in ("LungMets", "os_event"):
        out[col] = out[col].astype(int)
    sex = raw["Sex"].astype(str).str.strip().str.lower()
    if not sex.isin(["male", "female"]).all():
        raise IngestError(f"file {path}: unexpected Sex values {sorted(set(sex) - {'male', 'female'})}")
    out["sex_male"] = (sex == "male").astype(int)
    grade = raw["Grade"].astype("string").str.strip().str.lower()
    bad = sorted(set(grade.dropna()) - set(GRADE))
    if bad:
        raise IngestError(f"file {path}: unexpected Grade values {bad}")
    out["grade"] = grade.map(GRADE).astype("Int64")  # one patient has no grade: left empty, not imputed
    out["mskcc_type"] = raw["MSKCC type"].astype(str).str.strip()
    return out.set_index("patient_id")


def build_data_manifests(root: Path) -> dict[str, pd.DataFrame]:
    """Manifests for the shared real data (paths under ``${RADAE_DATA}``), by file name."""
    out: dict[str, pd.DataFrame] = {}
    sts = _with_data_root(scan_rows(root / "sts"), root)
    clinical = sts_clinical(root)
    missing = sorted(set(sts["patient_id"]) - set(clinical.index))
    if missing:
        raise IngestError(f"file {root / 'sts' / 'clinical_shared.csv'}: no clinical row for {missing}")
    sts = sts.join(clinical, on="patient_id")
    for modality, name in (("MR", "sts_mr.csv"), ("PET", "sts_pet.csv")):
        part = sts[sts["modality"] == modality].reset_index(drop=True)
        part["case_id"] = part["patient_id"] + "_" + modality
        out[name] = part
    pat1 = root / "ibsi" / "ibsi1_ct_phantom_PAT1"
    for sub, name in (("nifti", "ibsi_ct_phantom_nifti.csv"), ("dicom", "ibsi_ct_phantom_dicom.csv")):
        df = _with_data_root(scan_rows(pat1 / sub), root)
        if len(df) != 1:
            raise IngestError(f"folder {pat1 / sub}: expected one lesion, found {len(df)}")
        df["case_id"], df["patient_id"], df["modality"] = "ibsi_ct_pat1", "PAT1", "CT"
        out[name] = df
    return out


def write_data_manifests(out_dir: str | Path, root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Write :func:`build_data_manifests` into ``out_dir`` (the project's ``data_manifests/``)."""
    from radae.config import data_root

    root = Path(root) if root is not None else data_root()
    manifests = build_data_manifests(root)
    for name, df in manifests.items():
        atomic_write_text(Path(out_dir) / name, df.to_csv(index=False))
    return manifests
