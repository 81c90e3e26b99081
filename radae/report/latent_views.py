"""Views of the latent space for the report's latent section.

- 2-D embeddings of the learned features beside the handcrafted ones (PCA always; UMAP when the optional
  ``umap-learn`` is installed: ``pip install radae[umap]``), coloured by label, event and modality;
- nearest-neighbour lesions of a few query lesions in the standardised learned space (axial thumbnails of
  the preprocessed ROIs);
- for a VAE (``pretrain/model.pt`` of kind ``vae``, loaded with :func:`radae.models.load_trained`): images
  decoded from prior samples, traversals along the latent dimensions with the largest variance of mu
  across lesions, and a linear interpolation between two lesions' mu.

Everything is drawn from files of the run folder (the ROI ``.npz`` files are where ``preprocess/rois.parquet``
says, usually the shared preprocess cache); nothing is written back.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from radae.report import plots
from radae.report.blocks import Figure, Heading, Note

logger = logging.getLogger(__name__)

N_QUERIES = 3
N_NEIGHBOURS = 4
RADIOMICS_PREFIXES = ("original_", "wavelet", "log-sigma", "square", "squareroot", "logarithm", "exponential", "gradient", "lbp-")


def _standardise(X: np.ndarray) -> np.ndarray:
    X = np.where(np.isfinite(X), X, np.nanmedian(X, axis=0))
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def pca_2d(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, 2), explained variance ratio of the two components) of standardised ``X``."""
    Z = _standardise(X)
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    return U[:, :2] * S[:2], (S[:2] ** 2) / max(float(np.sum(S**2)), 1e-300)


def umap_2d(X: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP of standardised ``X`` (None if umap-learn is not installed or there are too few rows)."""
    try:
        import umap  # noqa: F401 - optional extra
    except ImportError:
        return None
    if len(X) < 5:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(X) - 1), random_state=seed, n_jobs=1)
        return reducer.fit_transform(_standardise(X))


def _colours(values: np.ndarray):
    """Categorical colours for arbitrary values; missing -> light grey. Returns (colours, legend {label: colour})."""
    vals = pd.Series(values, dtype=object)
    miss = vals.isna().to_numpy()
    cats = sorted({str(v) for v, m in zip(vals, miss) if not m})
    cmap = {c: plots.colour(i) for i, c in enumerate(cats)}
    return [("#cccccc" if m else cmap[str(v)]) for v, m in zip(vals, miss)], cmap


def embedding_figure(panels: dict[str, np.ndarray], colourings: list[tuple[str, np.ndarray]]):
    """Grid: one row per colouring, one column per embedding (e.g. learned PCA | handcrafted PCA | UMAPs)."""
    nr, nc = max(len(colourings), 1), len(panels)
    fig = plots.new_figure(2.6 * nc + 0.6, 2.4 * nr + 0.3)
    axes = fig.subplots(nr, nc, squeeze=False)
    for i, (cname, cvals) in enumerate(colourings or [("", np.full(len(next(iter(panels.values()))), None, dtype=object))]):
        cols, legend = _colours(cvals)
        for j, (pname, xy) in enumerate(panels.items()):
            ax = axes[i, j]
            ax.scatter(xy[:, 0], xy[:, 1], c=cols, s=12, lw=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(pname, fontsize=8)
            if j == 0:
                ax.set_ylabel(cname or "", fontsize=8)
        if legend and len(legend) <= 10:
            handles = [axes[i, -1].scatter([], [], c=c, s=12, label=l) for l, c in legend.items()]
            axes[i, -1].legend(handles=handles, fontsize=6, loc="best", title=cname, title_fontsize=6)
    return fig


def _handcrafted_matrix(ctx, case_ids: pd.Series) -> np.ndarray | None:
    rad = ctx.run.table("extract/radiomics.parquet")
    if rad is None:
        return None
    cols = [c for c in rad.columns if str(c).startswith(RADIOMICS_PREFIXES) and "_" in str(c)
            and pd.api.types.is_numeric_dtype(rad[c])]
    if len(cols) < 2:
        return None
    t = rad.assign(case_id=rad["case_id"].astype(str)).set_index("case_id").reindex(case_ids.astype(str))
    X = t[cols].to_numpy(dtype=float)
    keep = np.isfinite(X).mean(axis=0) > 0.5
    return X[:, keep] if keep.sum() >= 2 else None


def _thumb(path: str) -> np.ndarray | None:
    """The central axial slice of a preprocessed ROI, or None if the file cannot be read."""
    from radae.preprocess.store import load_roi

    try:
        img = load_roi(path).image
    except (OSError, ValueError, KeyError):
        return None
    return img[img.shape[0] // 2]


def image_grid(rows: list[tuple[str, list[tuple[str, np.ndarray | None]]]], title: str, window: tuple[float, float] | None = None):
    """Rows of labelled 2-D images (None = unreadable, drawn blank) on one grey-level window."""
    nc = max(len(r[1]) for r in rows)
    fig = plots.new_figure(1.25 * nc + 0.8, 1.35 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), nc, squeeze=False)
    imgs = [im for _, r in rows for _, im in r if im is not None]
    if window is None and imgs:
        allv = np.concatenate([im.ravel() for im in imgs])
        window = (float(np.percentile(allv, 1)), float(np.percentile(allv, 99)))
    for i, (rname, items) in enumerate(rows):
        for j in range(nc):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(items):
                cap, im = items[j]
                if im is not None:
                    ax.imshow(im, cmap="gray", vmin=window[0] if window else None, vmax=window[1] if window else None)
                ax.set_title(cap, fontsize=6)
            else:
                ax.set_visible(False)
            if j == 0:
                ax.set_ylabel(rname, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def view_blocks(ctx, rows: pd.DataFrame, X: np.ndarray, colourings: list[tuple[str, np.ndarray]], seed: int = 0) -> list:
    """All latent views for the latent rows ``rows`` (case_id, patient_id, ...) with features ``X`` (n, d)."""
    out: list = []
    rois = ctx.run.table("preprocess/rois.parquet")
    if rois is not None:
        rois = rois.assign(case_id=rois["case_id"].astype(str)).set_index("case_id")
    if "modality" not in rows and rois is not None and "modality" in rois:
        rows = rows.assign(modality=rois["modality"].reindex(rows["case_id"].astype(str)).to_numpy())
    colourings = list(colourings)
    if "modality" in rows:
        colourings.append(("modality", rows["modality"].to_numpy(object)))
    out += _embedding_blocks(ctx, rows, X, colourings, seed)
    out += _neighbour_blocks(rows, X, rois, colourings, seed)
    out += vae_blocks(ctx, rows, rois, seed)
    return out


def _embedding_blocks(ctx, rows, X, colourings, seed) -> list:
    panels: dict[str, np.ndarray] = {}
    xy, var = pca_2d(X)
    panels[f"learned: PCA ({var[0]:.0%}, {var[1]:.0%})"] = xy
    H = _handcrafted_matrix(ctx, rows["case_id"])
    if H is not None:
        hxy, hvar = pca_2d(H)
        panels[f"handcrafted: PCA ({hvar[0]:.0%}, {hvar[1]:.0%})"] = hxy
    u = umap_2d(X, seed)
    umap_note = None
    if u is not None:
        panels["learned: UMAP"] = u
        if H is not None:
            panels["handcrafted: UMAP"] = umap_2d(H, seed)
    else:
        umap_note = Note("UMAP not drawn: umap-learn is not installed (optional: pip install 'radae[umap]').")
    out: list = [Heading("Learned vs handcrafted feature space")]
    out.append(Figure(plots.to_data_uri(embedding_figure(panels, colourings)),
                      f"2-D embeddings of the standardised learned features beside the handcrafted ones (n = {len(rows)} lesions); "
                      "rows: colouring by label, event and modality (grey = no value). Embeddings are unsupervised: the colours "
                      "only show how outcomes fall in each space. PCA keeps distances; UMAP keeps neighbourhoods.",
                      "2-D embeddings of learned and handcrafted features"))
    if H is None:
        out.append(Note("Handcrafted embedding not drawn: extract/radiomics.parquet is missing or has no numeric features."))
    if umap_note is not None:
        out.append(umap_note)
    return out


def _neighbour_blocks(rows, X, rois, colourings, seed) -> list:
    if rois is None or "roi_path" not in rois or len(rows) < N_NEIGHBOURS + 2:
        return [Note("Nearest-neighbour lesions not shown: preprocess/rois.parquet (ROI files) is not available.")]
    Z = _standardise(X)
    ids = rows["case_id"].astype(str).to_numpy()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    queries = np.sort(rng.choice(len(ids), size=min(N_QUERIES, len(ids)), replace=False))
    lname, lvals = colourings[0] if colourings else (None, None)
    grid = []
    for q in queries:
        d = np.sqrt(((Z - Z[q]) ** 2).sum(axis=1))
        d[q] = np.inf
        nn = np.argsort(d, kind="stable")[:N_NEIGHBOURS]
        items = []
        for i, dist in [(q, 0.0)] + [(int(j), float(d[j])) for j in nn]:
            cap = ids[i] if i == q else f"{ids[i]}\nd={dist:.2f}"
            if lvals is not None and lvals[i] is not None and lvals[i] == lvals[i]:
                cap += f" ({lname}={lvals[i]})"
            items.append((cap, _thumb(str(rois["roi_path"].get(ids[i], "")))))
        grid.append((f"query {ids[q]}", items))
    fig = image_grid(grid, "Query lesion (left) and its nearest neighbours in the learned space")
    return [Heading("Nearest-neighbour lesions"),
            Figure(plots.to_data_uri(fig),
                   f"{len(queries)} seeded query lesions (left column) and their {N_NEIGHBOURS} nearest lesions by Euclidean "
                   "distance d of the standardised learned features; central axial slice of each preprocessed ROI, one grey "
                   "window for all. Neighbours that look alike show what the code encodes.", "nearest-neighbour lesions")]


# ----------------------------------------------------------------------------- VAE views
def _encode_rois(model, meta, paths: list[str]) -> tuple[np.ndarray, list[int]]:
    """mu of the ROIs that could be read (and their indices into ``paths``), in batches of 16."""
    import torch

    from radae.preprocess.items import Item, ItemReader

    reader = ItemReader(mask_channel=int(meta["in_channels"]) == 2)
    arrays, ok = [], []
    for i, p in enumerate(paths):
        try:
            arrays.append(reader.load(Item(str(i), str(i), "", p, -1)))
            ok.append(i)
        except Exception as e:  # noqa: BLE001 - an unreadable ROI is left out of the views, not fatal
            logger.warning("report: ROI %s unreadable for the VAE views: %s", p, e)
    mus = []
    with torch.no_grad():
        for b in range(0, len(arrays), 16):
            x = torch.from_numpy(np.stack(arrays[b:b + 16]))
            mus.append(model.encode(x).float().numpy())
    return (np.concatenate(mus) if mus else np.zeros((0, int(meta["latent_dim"])))), ok


def _decode(model, z: np.ndarray) -> list[np.ndarray]:
    """Central axial slice of channel 0 of each decoded code."""
    import torch

    with torch.no_grad():
        rec = model.decode(torch.as_tensor(z, dtype=torch.float32)).float().numpy()
    return [r[0, r.shape[1] // 2] for r in rec]


def vae_blocks(ctx, rows: pd.DataFrame, rois: pd.DataFrame | None, seed: int = 0, max_lesions: int = 64) -> list:
    """Prior samples, traversals and an interpolation, for a VAE run (nothing for other models)."""
    path = ctx.run.path("pretrain/model.pt")
    if not path.is_file():
        return []
    ctx.run.sha256("pretrain/model.pt")  # listed among the page's inputs
    try:
        import torch

        from radae.models import load_trained

        model, meta = load_trained(path, device="cpu")
    except Exception as e:  # noqa: BLE001 - the views are optional; say why they are missing
        return [Note(f"VAE views not drawn: pretrain/model.pt could not be loaded ({str(e).splitlines()[0][:160]}).")]
    if meta.get("kind") != "vae":
        return []
    out: list = [Heading("Generative views of the VAE")]
    d = int(meta["latent_dim"])
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((8, d), generator=gen).numpy()
    samples = _decode(model, z)
    out.append(Figure(plots.to_data_uri(image_grid([("prior", [(f"z{i}", s) for i, s in enumerate(samples)])],
                                                   "Decoded samples z ~ N(0, I)")),
                      f"8 codes drawn from the prior N(0, I) (seed {seed}) and decoded (central axial slice). A smooth, "
                      "generative latent space gives lesion-like images here.", "VAE prior samples"))
    if rois is None or "roi_path" not in rois:
        out.append(Note("Traversals and interpolation not drawn: preprocess/rois.parquet is not available."))
        return out
    ids = rows["case_id"].astype(str).to_numpy()[:max_lesions]
    paths = [str(rois["roi_path"].get(c, "")) for c in ids]
    mu, ok = _encode_rois(model, meta, paths)
    if len(ok) < 2:
        out.append(Note("Traversals and interpolation not drawn: fewer than 2 ROI files could be read."))
        return out
    centre, sd = mu.mean(axis=0), mu.std(axis=0)
    top = np.argsort(-sd, kind="stable")[: min(3, d)]
    steps = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    grid = []
    for k in top:
        codes = np.repeat(centre[None], len(steps), axis=0)
        codes[:, k] += steps * (sd[k] if sd[k] > 0 else 1.0)
        grid.append((f"dim {k}", [(f"{s:+g} sd", im) for s, im in zip(steps, _decode(model, codes))]))
    out.append(Figure(plots.to_data_uri(image_grid(grid, "Traversals along the top-variance latent dimensions")),
                      f"Each row moves one latent dimension (the {len(top)} with the largest sd of mu over {len(ok)} lesions) "
                      "from -2 to +2 sd around the mean code, the others fixed, and decodes.", "VAE latent traversals"))
    a, b = 0, int(np.argmax(((mu - mu[0]) ** 2).sum(axis=1)))  # the first lesion and the one farthest from it
    ts = np.linspace(0.0, 1.0, 7)
    codes = (1 - ts)[:, None] * mu[a] + ts[:, None] * mu[b]
    ends = [_thumb(paths[ok[a]]), _thumb(paths[ok[b]])]
    interp = [(f"t={t:.2f}", im) for t, im in zip(ts, _decode(model, codes))]
    out.append(Figure(plots.to_data_uri(image_grid([("decoded", interp), ("input", [(ids[ok[a]], ends[0]), (ids[ok[b]], ends[1])])],
                                                   "Interpolation between two lesions")),
                      f"Decoded codes on the straight line between mu of lesion {ids[ok[a]]} (t = 0) and of lesion "
                      f"{ids[ok[b]]} (t = 1), the lesion farthest from it; bottom: the two input ROIs.", "VAE interpolation"))
    return out
