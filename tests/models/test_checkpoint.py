import pytest
import torch

from radae.config import ModelConfig
from radae.util.errors import TrainError
from radae.models import build_model, load_trained
from radae.models.checkpoint import save_model

CFG = ModelConfig(kind="vae", channels=(4, 8), strides=(2, 2), latent_dim=5, num_res_units=0)


def test_model_file_round_trip_with_weights_only(tmp_path):
    model = build_model(CFG, 2, (8, 12, 8))
    path = tmp_path / "pretrain" / "model.pt"
    save_model(path, model, None, config_hash="abc", step=7, extra={"mask_channel": True})
    raw = torch.load(path, weights_only=True)  # plain values only
    assert raw["model_config"]["channels"] == [4, 8] and raw["roi_size_zyx"] == [8, 12, 8]
    loaded, meta = load_trained(tmp_path)  # run folder, pretrain folder or file all work
    assert not loaded.training
    assert meta["config_hash"] == "abc" and meta["step"] == 7 and meta["extra"] == {"mask_channel": True}
    assert meta["in_channels"] == 2 and meta["latent_dim"] == 5 and len(meta["sha256"]) == 64
    x = torch.randn(3, 2, 8, 12, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
    assert load_trained(path.parent)[1]["sha256"] == meta["sha256"]


def test_bad_model_files_are_train_errors(tmp_path):
    with pytest.raises(TrainError, match="no pretrain/model.pt"):
        load_trained(tmp_path)
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(TrainError, match="not a readable radae"):
        load_trained(bad)
    model = build_model(CFG, 1, (8, 8, 8))
    save_model(bad, model, None, config_hash="x", step=1, extra={})
    raw = torch.load(bad, weights_only=True)
    raw["model_config"]["latent_dim"] = 6  # weights no longer fit the config
    torch.save(raw, bad)
    with pytest.raises(TrainError, match="do not fit the stored model config"):
        load_trained(bad)
