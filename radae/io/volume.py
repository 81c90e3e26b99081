"""The one in-memory image type: a voxel array plus its physical geometry.

Orientation rules live here and only here:
- ``array`` is indexed (z, y, x), exactly as ``SimpleITK.GetArrayFromImage`` returns it.
- ``spacing_mm``, ``origin_mm`` are in SimpleITK order (x, y, z), physical LPS millimetres.
- ``direction`` is the row-major 3x3 direction cosine matrix (9 floats), SimpleITK order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Volume:
    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return (int(x), int(y), int(z))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(self.array)
        img.SetSpacing(tuple(float(s) for s in self.spacing_mm))
        img.SetOrigin(tuple(float(o) for o in self.origin_mm))
        img.SetDirection(tuple(float(d) for d in self.direction))
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, meta: dict | None = None) -> "Volume":
        return cls(
            array=sitk.GetArrayFromImage(img),
            spacing_mm=tuple(float(s) for s in img.GetSpacing()),  # type: ignore[arg-type]
            origin_mm=tuple(float(o) for o in img.GetOrigin()),  # type: ignore[arg-type]
            direction=tuple(float(d) for d in img.GetDirection()),
            meta=dict(meta or {}),
        )

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, new voxels (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} != {self.array.shape}")
        return Volume(array, self.spacing_mm, self.origin_mm, self.direction, dict(self.meta))

    def index_to_physical(self, index_xyz) -> np.ndarray:
        """Continuous voxel index (x, y, z) -> physical LPS mm."""
        d = np.asarray(self.direction, dtype=float).reshape(3, 3)
        return np.asarray(self.origin_mm) + d @ (np.asarray(index_xyz, dtype=float) * np.asarray(self.spacing_mm))

    def physical_to_index(self, point_mm) -> np.ndarray:
        """Physical LPS mm -> continuous voxel index (x, y, z)."""
        d = np.asarray(self.direction, dtype=float).reshape(3, 3)
        return np.linalg.solve(d, np.asarray(point_mm, dtype=float) - np.asarray(self.origin_mm)) / np.asarray(self.spacing_mm)
