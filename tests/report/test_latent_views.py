"""The latent section's views (embeddings, neighbours, VAE samples/traversals/interpolation) and the label-efficiency
section, on the tiny DAE run and on a copy of it whose model.pt is a VAE (loaded through the checkpoint code)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from radae.report.build import build_report

DAE_PARTS = ["2-D embeddings of learned and handcrafted features", "nearest-neighbour lesions"]
VAE_PARTS = ["VAE prior samples", "VAE latent traversals", "VAE interpolation"]


def _alts(html: str) -> set[str]:
    import re

    return set(re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', html))


def test_dae_run_latent_views_and_label_efficiency_figure(tiny_run):
    html = (tiny_run / "report" / "report.html").read_text()
    alts = _alts(html)
    for part in DAE_PARTS:
        assert part in alts
    assert not set(VAE_PARTS) & alts  # a DAE has no prior to sample
    assert "classification label-efficiency curves" in alts and "survival label-efficiency curves" in alts
    assert 'id="label_efficiency"' in html
    le = pd.read_parquet(tiny_run / "benchmark" / "label_efficiency.parquet")
    assert sorted(le["fraction"].unique()) == [0.5, 1.0]


@pytest.fixture(scope="module")
def vae_run(tiny_run, tmp_path_factory):
    import torch

    from radae.config import ModelConfig
    from radae.models import build_model, load_trained
    from radae.models.checkpoint import save_model

    run = tmp_path_factory.mktemp("vae") / tiny_run.name
    shutil.copytree(tiny_run, run)
    _, meta = load_trained(run / "pretrain" / "model.pt")
    cfg = ModelConfig.model_validate({**meta["model_config"], "kind": "vae"})
    torch.manual_seed(0)
    model = build_model(cfg, meta["in_channels"], meta["roi_size_zyx"]).eval()
    save_model(run / "pretrain" / "model.pt", model, None, config_hash="test", step=0, extra={})
    build_report(run)
    return run


def test_vae_run_shows_prior_samples_traversals_and_interpolation(vae_run):
    html = (vae_run / "report" / "report.html").read_text()
    alts = _alts(html)
    for part in DAE_PARTS + VAE_PARTS:
        assert part in alts
    assert "pretrain/model.pt" in html  # listed among the page's inputs


def test_vae_views_decode_with_the_saved_model(vae_run):
    """Traversal rows differ along the moved dimension (the decoder is really called on different codes)."""
    from radae.models import load_trained
    from radae.report import latent_views as V

    model, meta = load_trained(vae_run / "pretrain" / "model.pt")
    d = meta["latent_dim"]
    z = np.zeros((2, d))
    z[1, 0] = 3.0
    a, b = V._decode(model, z)
    assert a.shape == tuple(meta["roi_size_zyx"][1:]) and not np.allclose(a, b)


@pytest.mark.slow  # UMAP's numba compilation takes a while on a first call
def test_embeddings_pca_and_umap_when_installed():
    from radae.report import latent_views as V

    rng = np.random.default_rng(0)
    f = np.repeat([0.0, 5.0], 20) + rng.normal(size=40)
    X = np.column_stack([f[:, None] + 0.3 * rng.normal(size=(40, 3)), rng.normal(size=40)])  # one factor in 3 of 4 columns
    xy, var = V.pca_2d(X)
    assert xy.shape == (40, 2) and var[0] > 0.6 > var[1]
    assert abs(np.corrcoef(xy[:, 0], f)[0, 1]) > 0.95
    u = V.umap_2d(X)
    try:
        import umap  # noqa: F401
    except ImportError:
        assert u is None
    else:
        assert u.shape == (40, 2)
