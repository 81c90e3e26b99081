"""Report figures: matplotlib (Agg canvas, no pyplot state) -> PNG bytes -> ``data:`` URIs.

Each function takes plain arrays/frames and returns a :class:`Figure` ready for
:func:`to_data_uri`. Axes are honest: probabilities and AUCs on [0, 1] with the chance line,
survival from 0 to 1, ICC histograms on [min(0, data), 1]; sample sizes go in legends/captions.
PNG metadata is fixed so the same data give the same bytes.
"""
from __future__ import annotations

import base64
import io
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

DPI = 110
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def new_figure(width_in: float = 6.0, height_in: float = 4.0) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def to_data_uri(fig_or_png: Figure | bytes, dpi: int = DPI) -> str:
    png = fig_or_png if isinstance(fig_or_png, bytes) else to_png(fig_or_png, dpi)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ----------------------------------------------------------------------------- data
def histogram(values: np.ndarray, xlabel: str, title: str, log_x: bool = False, bins: int = 30) -> Figure:
    """Histogram of positive values (log-spaced bins when ``log_x``)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    if log_x:
        v = v[v > 0]
        lo, hi = (v.min(), v.max()) if v.size else (1e-3, 1.0)
        edges = np.geomspace(lo / 1.05, hi * 1.05, bins + 1) if hi > lo else np.geomspace(lo / 2, lo * 2, 4)
        ax.hist(v, bins=edges, color=colour(0), edgecolor="white")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.hist(v, bins=bins, color=colour(0), edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(f"{title} (n = {v.size})", fontsize=10)
    return fig


def strip_by_group(groups: Mapping[str, np.ndarray], ylabel: str, title: str,
                   ylim: tuple[float, float] | None = None, reference: float | None = None) -> Figure:
    """Box plot with jittered points per group (e.g. voxel spacing per axis); jitter is seeded."""
    rng = np.random.default_rng(0)
    names = list(groups)
    fig = new_figure(max(5.5, 1.1 * len(names) + 1.5), 3.6)
    ax = fig.add_subplot()
    data = [np.asarray(groups[n], dtype=float)[np.isfinite(np.asarray(groups[n], dtype=float))] for n in names]
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n = {len(d)})" for n, d in zip(names, data)])
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, d.size), d, "o", ms=3, alpha=0.5, color=colour(i - 1))
    if reference is not None:
        ax.axhline(reference, ls="--", color="#999999", lw=1)
    ax.set_ylabel(ylabel)
    if ylim is None:
        ax.set_ylim(bottom=0)
    else:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelsize=8)
    if len(names) > 6:  # many groups (feature sets): slanted labels never overlap
        ax.set_xticks(range(1, len(names) + 1), [f"{n} (n = {len(d)})" for n, d in zip(names, data)],
                      rotation=35, ha="right", rotation_mode="anchor")
    ax.set_title(title, fontsize=10)
    return fig


def loss_curves(series: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str = "step", ylabel: str = "loss",
                title: str = "Pretraining loss") -> Figure:
    """Lines of (x, y) per name; log y-axis when all values are positive and span > 1 decade."""
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    allv = []
    for i, (name, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        marker = "o" if ok.sum() <= 30 else None
        ax.plot(x[ok], y[ok], label=name, color=colour(i), marker=marker, ms=3, lw=1.2)
        allv.append(y[ok])
    v = np.concatenate(allv) if allv else np.array([])
    if v.size and v.min() > 0 and v.max() / v.min() > 10:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- latent space
def scatter_2d(xy: np.ndarray, colour_values: np.ndarray | None, colour_kind: str, colour_label: str,
               xlabel: str, ylabel: str, title: str) -> Figure:
    """2-D embedding coloured by a binary/categorical outcome or a continuous one (``colour_kind``)."""
    fig = new_figure(5.6, 4.4)
    ax = fig.add_subplot()
    xy = np.asarray(xy, dtype=float)
    if colour_values is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=14, color=colour(0), alpha=0.8, label=f"all (n = {len(xy)})")
        ax.legend(fontsize=8)
    elif colour_kind == "continuous":
        c = np.asarray(colour_values, dtype=float)
        known = np.isfinite(c)
        if (~known).any():
            ax.scatter(xy[~known, 0], xy[~known, 1], s=12, color="#bbbbbb", label=f"unknown (n = {(~known).sum()})")
            ax.legend(fontsize=8)
        sc = ax.scatter(xy[known, 0], xy[known, 1], c=c[known], s=16, cmap="viridis")
        fig.colorbar(sc, ax=ax, label=f"{colour_label} (n = {known.sum()})")
    else:
        vals = np.asarray(colour_values, dtype=object)
        cats = sorted({v for v in vals if v is not None and v == v}, key=str)
        for i, cat in enumerate(cats):
            sel = np.array([v == cat for v in vals])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=16, color=colour(i), alpha=0.85, label=f"{colour_label} = {cat} (n = {sel.sum()})")
        unknown = np.array([v is None or v != v for v in vals])
        if unknown.any():
            ax.scatter(xy[unknown, 0], xy[unknown, 1], s=12, color="#bbbbbb", label=f"unknown (n = {unknown.sum()})")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- downstream
def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
               bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> Figure:
    """ROC curves (fpr, tpr) per labelled entry on the unit square with the chance diagonal; an entry of ``bands``
    (fpr grid, lower tpr, upper tpr) under the same label is filled translucently in the curve's colour."""
    fig = new_figure(5.2, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="chance")
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        if bands and name in bands:
            grid, lower, upper = bands[name]
            ax.fill_between(grid, lower, upper, color=colour(i), alpha=0.18, lw=0)
        ax.plot(fpr, tpr, color=colour(i), lw=1.6, label=name, drawstyle="steps-post")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.005)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def calibration_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], title: str) -> Figure:
    """Binned calibration: (mean predicted, observed fraction, count per bin) per entry; marker area ~ count."""
    fig = new_figure(5.2, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="perfect calibration")
    for i, (name, (pred, obs, count)) in enumerate(curves.items()):
        count = np.asarray(count, dtype=float)
        ax.plot(pred, obs, color=colour(i), lw=1.2, label=name)
        ax.scatter(pred, obs, s=10 + 60 * count / max(count.max(), 1), color=colour(i), alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed fraction positive")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def estimate_with_ci(rows: Sequence[tuple[str, float, float, float]], xlabel: str, title: str,
                     reference: float | None = 0.5, xlim: tuple[float, float] | None = (0.0, 1.0)) -> Figure:
    """Dot-and-whisker plot: (label, estimate, low, high) per row, reference line (chance)."""
    fig = new_figure(6.0, max(2.0, 0.38 * len(rows) + 1.1))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    for i, (label, est, lo, hi) in enumerate(rows):
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [i, i], color=colour(0), lw=2)
        ax.plot([est], [i], "o", color=colour(1), ms=6)
    if reference is not None:
        ax.axvline(reference, ls="--", color="#999999", lw=1)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return fig


def km_panels(panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]],
              time_label: str, title: str) -> Figure:
    """Kaplan-Meier curves with 95% bands, one panel per entry: {panel: {group: (t, S, lo, hi, n)}}."""
    n = max(len(panels), 1)
    ncol = min(n, 2)
    nrow = int(np.ceil(n / ncol))
    fig = new_figure(5.0 * ncol, 3.4 * nrow)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, (panel, groups) in zip(axes.ravel(), panels.items()):
        for i, (group, (t, s, lo, hi, n_g)) in enumerate(groups.items()):
            c = colour(1 if group == "high" else 0 if group == "low" else i)
            ax.step(t, s, where="post", color=c, lw=1.6, label=f"{group} risk (n = {n_g})")
            ax.fill_between(t, lo, hi, step="post", color=c, alpha=0.15, lw=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_xlabel(time_label)
        ax.set_ylabel("survival probability")
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return fig


def lines_by_group(series: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str, title: str,
                   ylim: tuple[float, float] | None = (0.0, 1.0), reference: float | None = 0.5) -> Figure:
    """Markers joined by lines per group (e.g. time-dependent AUC over horizons)."""
    fig = new_figure(6.0, 3.8)
    ax = fig.add_subplot()
    for i, (name, (x, y)) in enumerate(series.items()):
        ax.plot(x, y, "o-", color=colour(i), label=name, ms=4)
    if reference is not None:
        ax.axhline(reference, ls="--", color="#999999", lw=1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- robustness / redundancy
def distributions(groups: Mapping[str, np.ndarray], xlabel: str, title: str, thresholds: Sequence[float] = (),
                  xlim_max: float | None = 1.0) -> Figure:
    """Overlaid step histograms per group (e.g. ICC per feature set), with threshold lines."""
    fig = new_figure(6.0, 3.8)
    ax = fig.add_subplot()
    data = {k: np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))] for k, v in groups.items()}
    allv = np.concatenate([d for d in data.values() if d.size]) if any(d.size for d in data.values()) else np.array([0.0])
    lo = min(0.0, float(allv.min()))
    hi = xlim_max if xlim_max is not None else float(allv.max())
    edges = np.linspace(lo, hi, 41)
    for i, (name, d) in enumerate(data.items()):
        if d.size == 0:
            continue
        w = np.full(d.size, 1.0 / d.size)  # fraction of features, so sets of different size compare
        ax.hist(np.clip(d, lo, hi), bins=edges, weights=w, histtype="step", lw=1.8, color=colour(i),
                label=f"{name} (n = {d.size} features)")
    for t in thresholds:
        ax.axvline(t, ls="--", color="#777777", lw=1)
    ax.set_xlim(lo, hi)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of features")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            colour_label: str, vmin: float = -1.0, vmax: float = 1.0, cmap: str = "RdBu_r") -> Figure:
    m = np.asarray(matrix, dtype=float)
    h = min(14.0, max(3.0, 0.18 * m.shape[0] + 1.6))
    w = min(16.0, max(4.0, 0.16 * m.shape[1] + 3.0))
    fig = new_figure(w, h)
    ax = fig.add_subplot()
    im = ax.imshow(m, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fs_r = 7 if m.shape[0] <= 40 else 5
    fs_c = 7 if m.shape[1] <= 40 else 5
    if m.shape[0] <= 80:
        ax.set_yticks(range(m.shape[0]), row_labels, fontsize=fs_r)
    if m.shape[1] <= 80:
        ax.set_xticks(range(m.shape[1]), col_labels, fontsize=fs_c, rotation=90)
    fig.colorbar(im, ax=ax, label=colour_label, shrink=0.8)
    ax.set_title(title, fontsize=10)
    return fig
