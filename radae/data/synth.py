"""Synthetic CT-like cohort with known ground truth (radae's embedded default data).

Each labeled patient has a hidden class ``label`` (0/1) and a hidden log-hazard ``risk``. The class is planted as a
documented *mix* of five lesion properties, each shifted by the class and blurred by its own patient-level noise, so
that no single property (and no single feature family) separates the classes on its own:

============  ==================================  =========================  ==============
family        property (truth.csv column)         class 0 -> class 1 shift   patient noise sd
============  ==================================  =========================  ==============
shape         ``lobulation`` (surface waviness)   +0.09                      0.06
texture       ``texture_hu`` (amplitude, HU)      +7.5                       5
texture       ``texture_scale_vox`` (grain)       -0.375                     0.25
intensity     ``mean_hu``                         +9                         6
spatial       ``rim_hu`` (rim-minus-core, HU)     +15                        10
============  ==================================  =========================  ==============

Every shift is 1.5 noise sd (the same in every family: the cohort favours no feature kind), so the Bayes-optimal
classifier on the hidden values (the log-likelihood ratio, linear here) reaches ``oracle_auc`` (written to
``oracle.json``; 0.98 for the demo's 40 patients), a ceiling that no feature set computed from the images can exceed
on average; scanner noise and partial volume put image-derived features well below it (a logistic model on five
hand-made lesion statistics reaches 0.93 in 5-fold CV, each family alone 0.4-0.8). The spatial pattern (a brighter rim around a darker core,
zero mean over the lesion) changes no first-order statistic's mean. Size depends weakly on risk; survival times
are drawn from an exponential model with hazard exp(risk) and uniform censoring. Scans get scanner-like Gaussian
noise and varying voxel spacings; some patients have two lesions (labels 1 and 2 in one mask). Extra unlabeled
patients (no outcomes) feed pretraining.

With ``sites > 1`` each patient also gets a ``site`` (site_1, site_2, ...) whose scanner changes the image:
site k (0-based) scales intensities by ``1 + 0.15 k``, shifts them by ``+25 k`` HU and adds noise of SD ``10 k`` HU
(a planted site effect, independent of the outcome), and every labeled patient a ``cohort`` (A or B, a seeded
half each; unlabeled patients get none) for external-validation examples. These draws come from a separate
stream, so ``sites=1`` (the default) writes exactly the cohort it always did.

Everything is drawn from ``np.random.default_rng(seed)``: same seed -> same bytes.
Outputs in ``out``: ``images/*.nii.gz``, ``masks/*.nii.gz``, ``manifest.csv``, ``truth.csv``, ``oracle.json``,
``evaluation_patients.txt`` (the labeled patients, kept out of pretraining by default).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy.ndimage import distance_transform_edt, gaussian_filter

from radae.util.fsutil import OutputWriteError, atomic_path, atomic_write_text
from radae.io.nifti import nifti_payload_problem

logger = logging.getLogger(__name__)

SYNTH_VERSION = 3  # bump when the generator's output changes: an existing cohort folder is then regenerated

# property -> (class-0 mean, class-1 shift, patient-level noise sd); see the module docstring
CLASS_EFFECTS = {
    "lobulation": (0.10, 0.09, 0.06),
    "texture_hu": (12.0, 7.5, 5.0),
    "texture_scale_vox": (1.4, -0.375, 0.25),
    "mean_hu": (58.0, 9.0, 6.0),
    "rim_hu": (0.0, 15.0, 10.0),
}
ORACLE_PROPERTIES = tuple(CLASS_EFFECTS)


def oracle_score(truth: pd.DataFrame) -> np.ndarray:
    """Bayes-optimal score from the hidden properties: the log-likelihood ratio of class 1 vs 0, sum_k shift_k / sd_k^2 *
    (x_k - mean_k - shift_k / 2) (equal-variance Gaussians; the clipping of a few values is ignored)."""
    score = np.zeros(len(truth))
    for k, (mean, shift, sd) in CLASS_EFFECTS.items():
        score += shift / sd**2 * (truth[k].to_numpy(float) - mean - shift / 2)
    return score


def oracle_auc(truth: pd.DataFrame) -> float | None:
    """AUC of :func:`oracle_score` over the labeled lesions (None if only one class)."""
    lab = truth[truth["labeled"].astype(bool)]
    y = lab["label"].to_numpy(int)
    if len(set(y)) < 2:
        return None
    s = oracle_score(lab)
    pos, neg = s[y == 1], s[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _class_property(rng: np.random.Generator, name: str, y: int) -> float:
    mean, shift, sd = CLASS_EFFECTS[name]
    return float(mean + shift * y + rng.normal(0.0, sd))


def _lesion(coords_mm: np.ndarray, center_mm: np.ndarray, radius_mm: float, lobulation: float,
            freqs: tuple[int, int], phase: float) -> np.ndarray:
    """Boolean mask of a lobulated ellipsoid-like body: r <= R (1 + a sin(k1 theta + phase) cos(k2 phi))."""
    d = coords_mm - center_mm[:, None, None, None]
    r = np.sqrt((d**2).sum(0)) + 1e-9
    theta = np.arccos(np.clip(d[0] / r, -1, 1))
    phi = np.arctan2(d[1], d[2])
    edge = radius_mm * (1.0 + lobulation * np.sin(freqs[0] * theta + phase) * np.cos(freqs[1] * phi))
    return r <= edge


def _scan(rng: np.random.Generator, size_vox: int, spacing: np.ndarray, lesions: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Image (HU, float32) and label mask (uint8) on a (z, y, x) grid with ``spacing`` (x, y, z) mm."""
    shape = (size_vox, size_vox, size_vox)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    coords = np.stack([zz * spacing[2], yy * spacing[1], xx * spacing[0]]).astype(np.float32)
    extent = np.array(shape) * spacing[::-1]
    body_c = extent / 2
    body = (((coords - body_c[:, None, None, None]) / (0.47 * extent)[:, None, None, None]) ** 2).sum(0) <= 1.0
    img = np.full(shape, -1000.0, np.float32)
    tissue = 40.0 + 15.0 * gaussian_filter(rng.standard_normal(shape), 3.0) * 3.0
    img[body] = tissue[body]
    mask = np.zeros(shape, np.uint8)
    for k, les in enumerate(lesions, start=1):
        m = _lesion(coords, les["center_mm"], les["radius_mm"], les["lobulation"], les["freqs"], les["phase"]) & body
        tex = gaussian_filter(rng.standard_normal(shape), les["texture_scale_vox"])
        tex /= tex.std() + 1e-9
        # spatial pattern: rim brighter than core by rim_hu, zero mean over the lesion (depth = distance to the edge)
        depth = distance_transform_edt(m, sampling=spacing[::-1])[m]
        rim = np.exp(-depth / 2.0)
        rim -= rim.mean()
        rim /= max(float(rim.max() - rim.min()), 1e-9)
        img[m] = les["mean_hu"] + les["texture_hu"] * tex[m] + les["rim_hu"] * rim
        mask[m] = k
    img += rng.normal(0.0, rng.uniform(8.0, 20.0), shape).astype(np.float32)  # scanner noise
    return img.astype(np.float32), mask


def _write(arr: np.ndarray, spacing: np.ndarray, origin: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), True)
        if nifti_payload_problem(tmp) is not None:  # ITK only prints to stderr when the disk fills up
            raise OutputWriteError(f"file {path}: the NIfTI writer left an incomplete file (disk full?) -> free disk space")


def generate_cohort(out: str | Path, cases: int = 40, seed: int = 0, size_vox: int = 48,
                    multi_lesion_fraction: float = 0.2, unlabeled: int | None = None, sites: int = 1) -> pd.DataFrame:
    """Write the cohort to ``out``; returns the manifest. ``cases`` labeled patients + ``unlabeled`` extra."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_unlabeled = cases // 2 if unlabeled is None else unlabeled
    rows, truth, evaluation = [], [], []
    site_rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))  # its own stream: sites=1 leaves the cohort unchanged
    site_of = site_rng.integers(0, sites, cases + n_unlabeled) if sites > 1 else np.zeros(cases + n_unlabeled, int)
    cohort_of = np.where(site_rng.permutation(cases) < cases // 2, "A", "B") if sites > 1 else None
    for p in range(cases + n_unlabeled):
        labeled = p < cases
        pid = f"SYN{p:04d}" if labeled else f"UNL{p - cases:04d}"
        y = int(rng.random() < 0.5)
        risk = 0.9 * y + rng.normal(0.0, 0.6)
        age = float(np.round(60 + 8 * risk + rng.normal(0, 8), 1))
        spacing = np.array([rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), rng.uniform(1.0, 2.0)])
        extent = np.array([size_vox] * 3) * spacing[::-1]  # z, y, x mm
        n_les = 2 if rng.random() < multi_lesion_fraction else 1
        lesions = []
        for k in range(n_les):
            radius = float(np.clip(rng.normal(7.0 + 0.8 * risk, 1.2), 4.0, 11.0))
            offset = np.array([0.0, 0.0, (-1) ** k * 0.22 * extent[2]]) if n_les > 1 else rng.uniform(-0.08, 0.08, 3) * extent
            lesions.append({
                "center_mm": extent / 2 + offset,
                "radius_mm": radius * (0.75 if n_les > 1 else 1.0),
                "lobulation": float(np.clip(_class_property(rng, "lobulation", y), 0.0, 0.45)),
                "freqs": (int(rng.integers(2, 5)), int(rng.integers(2, 5))),
                "phase": float(rng.uniform(0, 2 * np.pi)),
                "mean_hu": _class_property(rng, "mean_hu", y),
                "texture_hu": float(max(2.0, _class_property(rng, "texture_hu", y))),
                "texture_scale_vox": float(np.clip(_class_property(rng, "texture_scale_vox", y), 0.4, 2.5)),
                "rim_hu": _class_property(rng, "rim_hu", y),
            })
        img, mask = _scan(rng, size_vox, spacing, lesions)
        if site_of[p] > 0:  # the planted scanner effect of this patient's site
            k = int(site_of[p])
            img = ((1.0 + 0.15 * k) * img + 25.0 * k + site_rng.normal(0.0, 10.0 * k, img.shape)).astype(np.float32)
        origin = rng.uniform(-200, 200, 3).round(2)
        img_path, mask_path = out / "images" / f"{pid}.nii.gz", out / "masks" / f"{pid}.nii.gz"
        _write(img, spacing, origin, img_path)
        _write(mask, spacing, origin, mask_path)
        t_event = rng.exponential(1000.0 / np.exp(risk))
        t_cens = rng.uniform(300.0, 3000.0)
        time, event = float(np.round(min(t_event, t_cens), 1)), int(t_event <= t_cens)
        for k in range(1, n_les + 1):
            if not (mask == k).any():
                continue
            cid = f"{pid}_L{k}"
            rows.append({
                "case_id": cid, "patient_id": pid, "image": f"images/{pid}.nii.gz", "mask": f"masks/{pid}.nii.gz",
                "mask_label": k, "modality": "CT",
                "label": y if labeled else None, "os_time": time if labeled else None,
                "os_event": event if labeled else None, "age": age if labeled else None,
                **({"site": f"site_{int(site_of[p]) + 1}", "cohort": cohort_of[p] if labeled else None} if sites > 1 else {}),
            })
            les = lesions[k - 1]
            truth.append({"case_id": cid, "patient_id": pid, "labeled": labeled, "label": y, "risk": risk,
                          "radius_mm": les["radius_mm"], "lobulation": les["lobulation"], "mean_hu": les["mean_hu"],
                          "texture_hu": les["texture_hu"], "texture_scale_vox": les["texture_scale_vox"],
                          "rim_hu": les["rim_hu"], "lesion_voxels": int((mask == k).sum()),
                          "spacing_x": spacing[0], "spacing_y": spacing[1], "spacing_z": spacing[2]})
        if labeled:
            evaluation.append(pid)
    manifest = pd.DataFrame(rows)
    atomic_write_text(out / "manifest.csv", manifest.to_csv(index=False))
    truth_df = pd.DataFrame(truth)
    atomic_write_text(out / "truth.csv", truth_df.to_csv(index=False))
    import json

    atomic_write_text(out / "oracle.json", json.dumps({
        "oracle_auc": oracle_auc(truth_df), "unit": "lesion", "score": "log-likelihood ratio of the hidden properties",
        "class_effects": {k: {"class0_mean": m, "class1_shift": d, "noise_sd": sd} for k, (m, d, sd) in CLASS_EFFECTS.items()},
    }, indent=1) + "\n")
    atomic_write_text(out / "evaluation_patients.txt", "\n".join(evaluation) + "\n")
    logger.info("synth: %d patients (%d labeled), %d lesions in %s", cases + n_unlabeled, cases, len(manifest), out)
    return manifest
