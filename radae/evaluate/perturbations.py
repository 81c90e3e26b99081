"""Lesion perturbations for the robustness study: pure functions, parameters drawn first, then applied.

Perturbations act on a lesion as ``(image (z, y, x), mask (z, y, x), spacing_mm (x, y, z))`` on its
original grid and return a new ``(image, mask, spacing_mm)``; nothing is modified in place. Following
the draw-then-apply habit, :func:`draw_perturbation` draws the parameters of one perturbation from an
explicit ``np.random.Generator`` and :func:`apply_perturbation` applies them deterministically. The
benchmark stage then sends the perturbed scan through the whole preprocessing path and both extractors,
exactly as the unperturbed one went.

Kinds (after Zwanenburg et al. 2019, "Assessing robustness of radiomic features by image perturbation"):
- ``noise``: add noise with the image's own noise level (Immerkaer's estimator, times ``noise_scale``):
  Rician (magnitude of complex Gaussian noise) for MR with non-negative intensities, Gaussian otherwise.
- ``resample``: re-sample to a ``resample_factor`` times coarser spacing (linear image, thresholded
  linear mask); the pipeline then resamples it to its target spacing as it does any scan.
- ``rotate``: rotate about a random axis through the lesion centroid by +-(0.5..1) x ``rotation_deg``.
- ``translate``: sub-voxel shift of up to ``translation_vox`` per axis.
- ``erode`` / ``dilate``: the mask by one voxel (6-connected); the image is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from radae.util.errors import BenchmarkError

PERTURBATION_KINDS = ("noise", "resample", "rotate", "translate", "erode", "dilate")
ORIGINAL = "original"  # the condition name of the unperturbed extraction


# ----------------------------------------------------------------------------- noise level
def estimate_noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise standard deviation by Immerkaer (1996), median over axial slices.

    Each (y, x) slice is convolved with the Laplacian-difference mask [[1,-2,1],[-2,4,-2],[1,-2,1]];
    sigma = sqrt(pi/2) / (6 (H-2)(W-2)) * sum |I * M|. Insensitive to smooth structure.
    """
    img = np.asarray(image, dtype=float)
    if img.ndim == 2:
        img = img[None]
    if img.shape[1] < 3 or img.shape[2] < 3:
        return float(np.std(img))
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=float)
    sig = []
    for sl in img:
        conv = ndimage.convolve(sl, kernel, mode="reflect")[1:-1, 1:-1]
        h, w = sl.shape
        sig.append(np.sqrt(np.pi / 2.0) * np.abs(conv).sum() / (6.0 * (h - 2) * (w - 2)))
    return float(np.median(sig))


# ----------------------------------------------------------------------------- pure perturbations
def add_noise(image: np.ndarray, sigma: float, seed: int, rician: bool = False) -> np.ndarray:
    """Image plus zero-mean Gaussian noise of std ``sigma``; Rician: |image + n1 + i n2|."""
    rng = np.random.default_rng(seed)
    img = np.asarray(image, dtype=np.float32)
    n1 = rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    if not rician:
        return img + n1
    n2 = rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return np.sqrt((img + n1) ** 2 + n2**2)


def _mask_from_float(m: np.ndarray) -> np.ndarray:
    return (m >= 0.5).astype(np.uint8)


def resample_spacing(
    image: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float], factor: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Re-sample to a ``factor`` times coarser grid (linear image, thresholded linear mask).

    Returns (image, mask, new spacing_mm (x, y, z)); the shape shrinks by ~``factor`` per axis and the
    physical extent is kept. The pipeline then resamples this to its own target spacing.
    """
    img = np.asarray(image, dtype=np.float32)
    shape = np.array(img.shape)
    new_shape = np.maximum(np.round(shape / factor).astype(int), 2)
    zoom = new_shape / shape
    img2 = ndimage.zoom(img, zoom, order=1, mode="nearest", grid_mode=True)
    m2 = ndimage.zoom(np.asarray(mask, dtype=np.float32), zoom, order=1, mode="nearest", grid_mode=True)
    new_spacing = tuple(float(s) for s in np.asarray(spacing_mm, dtype=float) * (shape / new_shape)[::-1])
    return img2, _mask_from_float(m2), new_spacing  # type: ignore[return-value]


def rotation_matrix_zyx(axis: int, angle_deg: float) -> np.ndarray:
    """3x3 rotation in (z, y, x) coordinates about array axis ``axis`` (0 = z, 1 = y, 2 = x)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def rotate(image: np.ndarray, mask: np.ndarray, angle_deg: float, axis: int, spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angle_deg`` about array axis ``axis`` through the lesion centroid (array centre if
    the mask is empty), in physical space.

    With S = diag(spacing in z, y, x) the voxel-space map from output to input is S^-1 R^T S, so
    anisotropic voxels rotate as the physical object would. Linear interpolation; mask thresholded.
    """
    img = np.asarray(image, dtype=np.float32)
    s = np.asarray(spacing_mm, dtype=float)[::-1]
    mat = np.diag(1.0 / s) @ rotation_matrix_zyx(axis, angle_deg).T @ np.diag(s)
    m = np.asarray(mask) > 0
    centre = np.argwhere(m).mean(axis=0) if m.any() else (np.array(img.shape) - 1) / 2.0
    offset = centre - mat @ centre
    img2 = ndimage.affine_transform(img, mat, offset=offset, order=1, mode="nearest")
    m2 = ndimage.affine_transform(np.asarray(mask, dtype=np.float32), mat, offset=offset, order=1, mode="constant", cval=0.0)
    return img2, _mask_from_float(m2)


def translate(image: np.ndarray, mask: np.ndarray, shift_vox: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Shift by ``shift_vox`` (z, y, x) voxels, sub-voxel, linear interpolation; mask thresholded."""
    img2 = ndimage.shift(np.asarray(image, dtype=np.float32), shift_vox, order=1, mode="nearest")
    m2 = ndimage.shift(np.asarray(mask, dtype=np.float32), shift_vox, order=1, mode="constant", cval=0.0)
    return img2, _mask_from_float(m2)


_STRUCT6 = ndimage.generate_binary_structure(3, 1)


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by one voxel (6-connected). Raises BenchmarkError if nothing is left."""
    out = ndimage.binary_erosion(np.asarray(mask) > 0, structure=_STRUCT6).astype(np.uint8)
    if not out.any():
        raise BenchmarkError("mask erosion by one voxel leaves no lesion voxel (lesion too thin)")
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one voxel (6-connected)."""
    return ndimage.binary_dilation(np.asarray(mask) > 0, structure=_STRUCT6).astype(np.uint8)


# ----------------------------------------------------------------------------- draw, then apply
@dataclass(frozen=True)
class PerturbationSettings:
    noise_scale: float = 1.0  # added noise std = this x the image's estimated noise std
    resample_factor: float = 1.5
    rotation_deg: float = 10.0
    translation_vox: float = 1.0


@dataclass(frozen=True)
class Perturbation:
    kind: str
    params: tuple[tuple[str, float], ...] = ()

    def get(self, name: str) -> float:
        return dict(self.params)[name]


def draw_perturbation(kind: str, rng: np.random.Generator, settings: PerturbationSettings = PerturbationSettings()) -> Perturbation:
    """Draw the random parameters of one perturbation (the application is deterministic)."""
    if kind == "noise":
        return Perturbation(kind, (("scale", settings.noise_scale), ("seed", float(rng.integers(0, 2**31 - 1)))))
    if kind == "resample":
        return Perturbation(kind, (("factor", settings.resample_factor),))
    if kind == "rotate":
        angle = float(rng.uniform(0.5, 1.0) * settings.rotation_deg * rng.choice([-1.0, 1.0]))
        return Perturbation(kind, (("axis", float(rng.integers(0, 3))), ("angle_deg", angle)))
    if kind == "translate":
        shift = rng.uniform(-settings.translation_vox, settings.translation_vox, size=3)
        return Perturbation(kind, tuple((f"shift_{a}", float(v)) for a, v in zip("zyx", shift)))
    if kind in ("erode", "dilate"):
        return Perturbation(kind)
    raise ValueError(f"unknown perturbation {kind!r}; known: {PERTURBATION_KINDS}")


def apply_perturbation(
    p: Perturbation, image: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float], modality: str | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Apply a drawn perturbation: new (image float32, mask uint8, spacing_mm (x, y, z)).

    Only ``resample`` changes the shape and spacing; the inputs are never modified.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    spacing = tuple(float(s) for s in spacing_mm)
    if p.kind == "noise":
        sigma = p.get("scale") * estimate_noise_sigma(image)
        rician = (modality or "").upper() == "MR" and float(image.min()) >= 0.0
        return add_noise(image, sigma, int(p.get("seed")), rician=rician), mask, spacing  # type: ignore[return-value]
    if p.kind == "resample":
        return resample_spacing(image, mask, spacing, p.get("factor"))
    if p.kind == "rotate":
        return (*rotate(image, mask, p.get("angle_deg"), int(p.get("axis")), spacing), spacing)  # type: ignore[return-value]
    if p.kind == "translate":
        return (*translate(image, mask, [p.get("shift_z"), p.get("shift_y"), p.get("shift_x")]), spacing)  # type: ignore[return-value]
    if p.kind == "erode":
        return image, erode(mask), spacing  # type: ignore[return-value]
    if p.kind == "dilate":
        return image, dilate(mask), spacing  # type: ignore[return-value]
    raise ValueError(f"unknown perturbation {p.kind!r}")

