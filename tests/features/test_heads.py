"""Feature heads beyond the bottleneck: columns, values, dictionary rows and provenance of each head."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from radae.features import heads as hd
from radae.features import latent as lat
from radae.features.table import read_provenance
from radae.runner import run_pipeline

from .conftest import build_tiny_model, pipeline


def _run(cfg):
    return run_pipeline(cfg, stages=["extract"], quiet=True)


def test_pool_maps_matches_hand_computed_statistics():
    torch.manual_seed(0)
    h = torch.rand(2, 3, 4, 4, 4)
    mask = torch.zeros(2, 8, 8, 8)
    mask[0, :4, :4, :4] = 1  # exactly the level's first voxel block (2x2x2 -> one level voxel... 4^3 region -> 2^3 voxels)
    out = hd.pool_maps([h], mask)
    assert out.shape == (2, 9)
    assert torch.allclose(out[:, 0:3], h.mean(dim=(2, 3, 4)))
    assert torch.allclose(out[:, 3:6], h.amax(dim=(2, 3, 4)))
    # sample 0: the mask covers the level voxels [:2, :2, :2] fully and nothing else
    assert torch.allclose(out[0, 6:9], h[0, :, :2, :2, :2].mean(dim=(1, 2, 3)), atol=1e-6)
    # sample 1 has no mask: falls back to the global average
    assert torch.allclose(out[1, 6:9], out[1, 0:3])


def test_random_model_is_seeded_and_untrained():
    meta = {"model_config": build_tiny_model().config.model_dump(mode="json"), "in_channels": 1, "roi_size_zyx": (16, 16, 16)}
    a, b = hd.random_model(meta, 3, torch.device("cpu")), hd.random_model(meta, 3, torch.device("cpu"))
    c = hd.random_model(meta, 4, torch.device("cpu"))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].dtype.is_floating_point)


def test_anomaly_errors_are_zero_for_a_perfect_reconstruction():
    x = torch.rand(2, 1, 8, 8, 8)
    mask = torch.zeros(2, 8, 8, 8)
    mask[0, 2:5, 2:5, 2:5] = 1

    class Echo(torch.nn.Module):
        def forward(self, inp, generator=None):
            from radae.models.autoencoder import AeOutput

            return AeOutput(inp, inp.flatten(1)[:, :2])

    meta = {"kind": "dae", "extra": {"noise": {"kind": "gaussian", "sigma": [0.1, 0.3]}}}
    vals = hd.anomaly_features(Echo(), x, mask, ["a", "b"], ["CT", "CT"], meta, 0)
    cols = hd.anomaly_columns(meta)
    t = pd.DataFrame(vals, columns=cols)
    assert (t["anomaly_roi_mse_clean"] == 0).all()
    assert np.isnan(t.loc[1, "anomaly_mask_mse_clean"])  # no mask: undefined, not 0
    # with an echo the error at noise sigma s is the noise itself: MSE ~ s^2
    assert t.loc[0, "anomaly_roi_mse_s0"] == pytest.approx(0.01, rel=0.15)
    assert t.loc[0, "anomaly_roi_mse_s1"] == pytest.approx(0.09, rel=0.15)
    # the per-lesion noise draw depends on the case id only, not on the batch
    again = hd.anomaly_features(Echo(), x[1:], mask[1:], ["b"], ["CT"], meta, 0)
    assert np.allclose(again[0, 2:], vals[1, 2:], equal_nan=True)


def test_extract_stage_writes_every_head_with_dictionary_and_provenance(tiny_run):
    runs, run_dir, cases, rois = tiny_run
    from .conftest import save_tiny_model

    save_tiny_model(run_dir / "pretrain" / "model.pt", seed=5)  # weights other than the seed-0 initialisation
    _run(pipeline(runs))
    t = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    _, meta = __import__("radae.models", fromlist=["load_trained"]).load_trained(run_dir / "pretrain" / "model.pt")
    expect = lat.feature_columns(meta, ("pooled", "anomaly", "random"))
    assert list(t.columns) == ["case_id", "patient_id", *sorted(expect, key=expect.index)] or \
        set(t.columns) == {"case_id", "patient_id", *expect}
    assert len([c for c in t.columns if c.startswith("pooled_")]) == 3 * sum(meta["model_config"]["channels"])
    assert len([c for c in t.columns if c.startswith("random_latent_")]) == meta["latent_dim"]
    assert {"anomaly_roi_mse_clean", "anomaly_mask_mae_clean"} <= set(t.columns)
    assert np.isfinite(t.filter(regex="^(latent|pooled|random)_").to_numpy()).all()
    # the random encoder (the run seed's initialisation) is not the model's weights
    assert not np.allclose(t.filter(regex=r"^latent_\d+$").to_numpy(), t.filter(regex=r"^random_latent_").to_numpy())
    d = pd.read_csv(run_dir / "extract" / "data_dictionary.csv")
    lat_rows = d[d["table"] == "latent"]
    assert set(lat_rows["feature"]) == set(expect)
    assert set(lat_rows["family"]) == {"latent", "learned_pooled", "anomaly", "random_encoder", "random_pooled"}
    assert lat_rows["description"].str.len().min() > 20
    prov = read_provenance(run_dir / "extract" / "latent.parquet")
    assert set(prov["heads"]) == {"bottleneck", "pooled", "anomaly", "random"}


def test_heads_can_be_switched_off(tiny_run):
    runs, run_dir, _, _ = tiny_run
    _run(pipeline(runs, extract={"latent": {"heads": []}}))
    t = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    assert all(c in ("case_id", "patient_id") or c.startswith("latent_") for c in t.columns)


def test_bottleneck_is_the_same_bytes_with_and_without_the_heads(tiny_run):
    runs, run_dir, _, _ = tiny_run
    _run(pipeline(runs, extract={"latent": {"heads": []}}))
    plain = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    _run(pipeline(runs, extract={"latent": {"heads": ["pooled", "anomaly", "random"]}}))
    full = pd.read_parquet(run_dir / "extract" / "latent.parquet")
    cols = [c for c in plain.columns if c.startswith("latent_")]
    assert plain[cols].equals(full[cols])  # one encoder pass serves the bottleneck and the pooled head
