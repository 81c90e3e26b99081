"""Redundancy between learned and handcrafted features: which handcrafted feature does a latent mirror?

Spearman rank correlation (robust to the monotone transforms radiomics features are full of) between
every latent dimension and every handcrafted feature, lesion volume included, over all lesions. No
outcome is involved, so using every lesion leaks nothing.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import rankdata

logger = logging.getLogger(__name__)


def _rank_standardise(X: np.ndarray) -> np.ndarray:
    """Column ranks (midranks, NaN kept as NaN), centred and scaled to unit norm; constant columns -> NaN."""
    X = np.asarray(X, dtype=float)
    R = rankdata(X, axis=0, nan_policy="omit")
    R = R - np.nanmean(R, axis=0)
    norm = np.sqrt(np.nansum(R**2, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, R / np.where(norm > 0, norm, 1.0), np.nan)


def spearman_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Spearman rho between each column of A (n, p) and each column of B (n, q) -> (p, q).

    Rows with a NaN in either matrix are dropped first (complete cases); constant columns give NaN.
    """
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    ok = np.isfinite(A).all(axis=1) & np.isfinite(B).all(axis=1)
    ra, rb = _rank_standardise(A[ok]), _rank_standardise(B[ok])
    return ra.T @ rb


def redundancy_table(latent: pd.DataFrame, handcrafted: pd.DataFrame, volume: pd.Series | None = None) -> pd.DataFrame:
    """Long table latent x handcrafted: latent, feature, rho, abs_rho, is_volume.

    ``latent`` and ``handcrafted`` are feature frames on the same rows (same order); ``volume`` (if
    given) is added as a handcrafted column named after the series.
    """
    hc = handcrafted.copy()
    if volume is not None:
        hc[volume.name] = np.asarray(volume, dtype=float)
    rho = spearman_matrix(latent.to_numpy(dtype=float), hc.to_numpy(dtype=float))
    lat_names = np.repeat(np.asarray(latent.columns, dtype=object), hc.shape[1])
    hc_names = np.tile(np.asarray(hc.columns, dtype=object), latent.shape[1])
    flat = rho.ravel()
    return pd.DataFrame(
        {
            "latent": lat_names,
            "feature": hc_names,
            "rho": flat,
            "abs_rho": np.abs(flat),
            "is_volume": hc_names == (volume.name if volume is not None else object()),
        }
    )


def redundancy_summary(table: pd.DataFrame) -> dict:
    """Headline numbers: per latent its best-matching handcrafted feature, and how much is volume.

    Keys: n_latent, n_handcrafted, median_max_abs_rho (median over latents of the strongest |rho|),
    fraction_latent_max_abs_rho_ge_0_8, volume_max_abs_rho, fraction_latent_volume_abs_rho_ge_0_5,
    top (up to 10 latents with their best match: latent, feature, rho).
    """
    if table.empty:
        return {}
    ok = table.dropna(subset=["abs_rho"])
    best = ok.loc[ok.groupby("latent")["abs_rho"].idxmax()].sort_values("abs_rho", ascending=False)
    out = {
        "n_latent": int(table["latent"].nunique()),
        "n_handcrafted": int(table["feature"].nunique()),
        "median_max_abs_rho": float(best["abs_rho"].median()) if len(best) else float("nan"),
        "fraction_latent_max_abs_rho_ge_0_8": float((best["abs_rho"] >= 0.8).sum() / table["latent"].nunique()),
        "top": [
            {"latent": str(r.latent), "feature": str(r.feature), "rho": float(r.rho)} for r in best.head(10).itertuples()
        ],
    }
    vol = ok[ok["is_volume"]]
    if len(vol):
        out["volume_max_abs_rho"] = float(vol["abs_rho"].max())
        out["fraction_latent_volume_abs_rho_ge_0_5"] = float((vol["abs_rho"] >= 0.5).sum() / table["latent"].nunique())
    return out
