"""What a pretraining run writes as it goes: ``metrics.csv`` / ``metrics.jsonl`` (and TensorBoard if installed) and
preview PNGs of clean, noisy and reconstructed slices."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from radae.util.fsutil import atomic_write_bytes, atomic_write_text

METRIC_COLUMNS = ["step", "epoch", "split", "loss", "recon", "kl", "sparse", "beta", "lr", "grad_norm",
                  "patches_per_s", "data_wait_fraction", "psnr_noisy", "psnr_recon", "psnr_gain_db", "elapsed_s",
                  "contractive"]


class MetricsLog:
    """metrics.csv + metrics.jsonl (same rows). On resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, folder: Path, keep_until_step: int | None):
        self.csv_path, self.jsonl_path = folder / "metrics.csv", folder / "metrics.jsonl"
        rows: list[dict] = []
        if keep_until_step is not None and self.jsonl_path.exists():
            for line in self.jsonl_path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if int(row.get("step", 0)) <= keep_until_step:
                        rows.append(row)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
        atomic_write_text(self.csv_path, buf.getvalue())
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
        self.rows = rows
        self._tb = None
        with contextlib.suppress(ImportError, ModuleNotFoundError):
            from torch.utils.tensorboard import SummaryWriter  # only if tensorboard is installed

            self._tb = SummaryWriter(str(folder / "tensorboard"))

    def write(self, row: dict) -> None:
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.rows.append(row)
        with open(self.jsonl_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


SOFT_TISSUE_HU = (-160.0, 240.0)  # preview window for CT (W 400, L 40), mapped into the normalised units


def display_window(modality: str, clean: np.ndarray, normalise: dict) -> tuple[float, float]:
    """Grey-level window of a preview in normalised units: CT soft tissue (W400 L40 HU) within the configured HU
    window; MR the 1st-99th percentile of the clean ROI; PET 0 to its 99.5th percentile."""
    mod = str(modality).upper()
    if mod == "CT":
        lo_hu, hi_hu = float(normalise.get("hu_min", -1000.0)), float(normalise.get("hu_max", 400.0))
        to_unit = lambda hu: (min(max(hu, lo_hu), hi_hu) - lo_hu) / (hi_hu - lo_hu)  # noqa: E731
        lo, hi = to_unit(SOFT_TISSUE_HU[0]), to_unit(SOFT_TISSUE_HU[1])
    elif mod in ("PET", "PT"):
        lo, hi = 0.0, float(np.percentile(clean, 99.5))
    else:
        lo, hi = (float(v) for v in np.percentile(clean, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def save_preview(path: Path, clean: np.ndarray, noisy: np.ndarray, recon: np.ndarray, title: str,
                 window: tuple[float, float] | None = None) -> None:
    """PNG: rows = central axial, coronal, sagittal slices; columns = clean input, noisy input, reconstruction (one
    grey-level ``window`` for all three) and |reconstruction - clean| (its own colour scale, 0 to half the window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 7.2), dpi=100)
    FigureCanvasAgg(fig)
    lo, hi = window if window is not None else tuple(np.percentile(clean, [0.5, 99.5]))
    if hi <= lo:
        hi = lo + 1.0
    err = np.abs(recon - clean)
    cz, cy, cx = (n // 2 for n in clean.shape)
    cols = (("clean", clean, "gray", lo, hi), ("noisy", noisy, "gray", lo, hi), ("reconstruction", recon, "gray", lo, hi),
            ("|error|", err, "magma", 0.0, (hi - lo) / 2))
    for r, plane in enumerate(("axial", "coronal", "sagittal")):
        for c, (name, vol, cmap, vmin, vmax) in enumerate(cols):
            sl = (vol[cz], vol[:, cy], vol[:, :, cx])[r]
            ax = fig.add_subplot(3, 4, 4 * r + c + 1)
            ax.imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower" if r else "upper", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(plane, fontsize=9)
    fig.suptitle(f"{title}  (window {lo:.3g} to {hi:.3g}, normalised units)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
