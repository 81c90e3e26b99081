"""Latent features (the bottleneck code; heads=(), the other heads are in test_heads.py): same input as training, batched
encode, flips, mask channel, failures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radae.config import LatentConfig
from radae.features import latent as lat
from radae.models.device import select_device
from radae.preprocess.store import load_roi, save_roi

from .conftest import ROI, build_tiny_model, make_run


def _rows(tmp_path, n=5, mask_channel=False):
    _, rois = make_run(tmp_path / "runs" / "t", n=n, model=False, mask_channel=mask_channel)
    return rois.to_dict("records")


def _meta(model):
    return {"in_channels": model.in_channels, "roi_size_zyx": model.roi_size_zyx, "latent_dim": model.config.latent_dim}


def test_latents_equal_model_encode_on_the_stored_roi(tmp_path):
    rows = _rows(tmp_path)
    model = build_tiny_model()
    res = lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=(), batch_size=2), torch.device("cpu"))
    assert res.failures == []
    assert list(res.table.columns) == ["case_id", "patient_id"] + [f"latent_{i:03d}" for i in range(6)]
    roi = load_roi(rows[3]["roi_path"])
    with torch.inference_mode():
        expected = model.encode(torch.from_numpy(roi.image[None, None].astype(np.float32))).numpy()[0]
    got = res.table.iloc[3, 2:].to_numpy(dtype=float)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_same_batch_size_same_bytes(tmp_path):
    rows = _rows(tmp_path)
    model = build_tiny_model()
    a = lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=(), batch_size=4), torch.device("cpu")).table
    b = lat.extract_latents(rows, build_tiny_model(), _meta(model), LatentConfig(heads=(), batch_size=4), torch.device("cpu")).table
    assert a.equals(b)


def test_channels_last_and_bf16_inference_stay_close_to_plain_fp32(tmp_path):
    rows = _rows(tmp_path)

    def table(**kw):
        model = build_tiny_model()
        return lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=(), batch_size=4, **kw), torch.device("cpu")).table

    plain = table(channels_last=False).iloc[:, 2:].to_numpy(float)
    cl = table().iloc[:, 2:].to_numpy(float)
    np.testing.assert_allclose(cl, plain, rtol=1e-4, atol=1e-5)  # same fp32 maths, another memory layout
    bf16 = table(precision="bf16").iloc[:, 2:].to_numpy(float)
    scale = np.abs(plain).max()
    assert 0 < np.abs(bf16 - plain).max() < 0.03 * scale  # bfloat16 really ran (not bit-equal), and stayed close
    assert np.array_equal(bf16, table(precision="bf16").iloc[:, 2:].to_numpy(float))  # deterministic on CPU


def test_flip_averaging_is_flip_invariant(tmp_path):
    rows = _rows(tmp_path, n=1)
    model = build_tiny_model()
    cfg = LatentConfig(heads=(), tta_flips=True)
    assert len(lat.flip_sets(True)) == 8 and lat.flip_sets(False) == [()]
    z = lat.extract_latents(rows, model, _meta(model), cfg, torch.device("cpu")).table.iloc[0, 2:].to_numpy(float)
    roi = load_roi(rows[0]["roi_path"])
    flipped = tmp_path / "flipped.npz"
    save_roi(flipped, roi.image[::-1, :, ::-1].copy(), roi.mask[::-1, :, ::-1].copy(), roi.spacing_mm, roi.center_mm)
    z2 = lat.extract_latents([{**rows[0], "roi_path": str(flipped)}], model, _meta(model), cfg,
                             torch.device("cpu")).table.iloc[0, 2:].to_numpy(float)
    np.testing.assert_allclose(z, z2, rtol=1e-5, atol=1e-6)
    plain = lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=()), torch.device("cpu")).table.iloc[0, 2:].to_numpy(float)
    assert not np.allclose(plain, z)


def test_mask_channel_from_model_meta(tmp_path):
    rows = _rows(tmp_path, n=2)
    model = build_tiny_model(in_channels=2)
    res = lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=()), torch.device("cpu"))
    roi = load_roi(rows[1]["roi_path"])
    x = torch.from_numpy(np.stack([roi.image, roi.mask.astype(np.float32)])[None])
    with torch.inference_mode():
        expected = model.encode(x).numpy()[0]
    np.testing.assert_allclose(res.table.iloc[1, 2:].to_numpy(float), expected, rtol=1e-5, atol=1e-6)


def test_bad_rois_become_failures(tmp_path):
    rows = _rows(tmp_path, n=3)
    roi = load_roi(rows[0]["roi_path"])
    save_roi(rows[0]["roi_path"], np.full_like(roi.image, np.nan), roi.mask, roi.spacing_mm, roi.center_mm)
    save_roi(rows[1]["roi_path"], roi.image[:8], roi.mask[:8], roi.spacing_mm, roi.center_mm)
    model = build_tiny_model()
    res = lat.extract_latents(rows, model, _meta(model), LatentConfig(heads=()), torch.device("cpu"))
    assert res.table["case_id"].tolist() == [rows[2]["case_id"]]
    msgs = dict((c, m) for c, m, _ in res.failures)
    assert "non-finite" in msgs[rows[0]["case_id"]]
    assert f"trained on {[ROI, ROI, ROI]}" in msgs[rows[1]["case_id"]]


def test_cuda_request_without_gpu_is_an_error(tmp_path):
    from radae.util.errors import ExtractError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "model.pt").write_bytes(b"")  # the device is chosen before the model is read
    with pytest.raises(ExtractError, match=r"^extract\.latent\.device is 'cuda' but torch sees no CUDA device"):
        lat.load_model(tmp_path, LatentConfig(device="cuda"))
    assert select_device("auto", what="extract.latent.device", error=ExtractError).type == "cpu"


def test_prepared_model_is_reused_not_copied_again():
    model = build_tiny_model()
    cfg = LatentConfig(heads=())
    prepared = lat.prepare_model(model, cfg)
    assert prepared is not model and lat.prepare_model(prepared, cfg) is prepared
    other = lat.prepare_model(prepared, LatentConfig(heads=(), channels_last=False))  # another layout: a fresh copy
    assert other is not prepared and lat.prepare_model(other, LatentConfig(heads=(), channels_last=False)) is other
