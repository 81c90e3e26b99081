"""model.pt and training checkpoints: plain dicts of tensors and JSON-able values, read with ``weights_only=True``.

``<run>/pretrain/model.pt`` (final weights)::

    {"format": "radae-model", "version": 1, "model_config": {...ModelConfig as JSON...}, "in_channels": int,
     "roi_size_zyx": [z, y, x], "config_hash": str, "step": int, "state_dict": {name: tensor}, "extra": {...}}

``<run>/pretrain/checkpoints/last.pt`` adds optimizer / scheduler / scaler / RNG states (see radae.train).
Nothing is ever unpickled: ``torch.load(weights_only=True)`` refuses arbitrary objects, so a model file from an
untrusted source cannot run code.
"""
from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from radae.config import ModelConfig
from radae.util.errors import TrainError, case_message
from radae.util.fsutil import atomic_path
from radae.util.hashing import file_sha256

logger = logging.getLogger(__name__)

MODEL_FORMAT = "radae-model"
CHECKPOINT_FORMAT = "radae-checkpoint"
FORMAT_VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def save_torch(path: str | Path, obj: dict) -> None:
    """Atomic ``torch.save``: a crash leaves the previous file intact."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def read_torch(path: str | Path, expected_format: str) -> dict:
    """``torch.load(weights_only=True)`` with one-line errors for missing, foreign or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(case_message(None, path, "file not found", "run the pretrain stage first"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise TrainError(case_message(None, path, f"not a readable radae {expected_format} file ({first})",
                                      "use a file written by radae's pretrain stage")) from None
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise TrainError(case_message(None, path, f"not a {expected_format} file (format {obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r})",
                                      "use a file written by radae's pretrain stage"))
    if obj.get("version") != FORMAT_VERSION:
        raise TrainError(case_message(None, path, f"format version {obj.get('version')} is not supported (expected {FORMAT_VERSION})",
                                      "re-run pretraining with this radae version"))
    return obj


def model_config_from(obj: dict, path: Path) -> ModelConfig:
    try:
        return ModelConfig.model_validate(obj["model_config"])
    except (ValidationError, KeyError, TypeError) as e:
        raise TrainError(case_message(None, path, f"stored model config is invalid ({str(e).splitlines()[0][:160]})",
                                      "re-run pretraining")) from None


def save_model(path: str | Path, model: nn.Module, state_dict: dict | None, *, config_hash: str, step: int, extra: dict) -> None:
    m = unwrap(model)
    save_torch(path, {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "model_config": m.config.model_dump(mode="json"),
        "in_channels": int(m.in_channels),
        "roi_size_zyx": [int(n) for n in m.roi_size_zyx],
        "config_hash": config_hash,
        "step": int(step),
        "state_dict": state_dict if state_dict is not None else cpu_state_dict(m),
        "extra": extra,
    })


def resolve_model_path(path: str | Path) -> Path:
    """Accept the model file, a ``pretrain`` folder or a run folder."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "pretrain" / "model.pt", p / "model.pt"):
            if cand.is_file():
                return cand
        raise TrainError(case_message(None, p, "no pretrain/model.pt in this folder", "run the pretrain stage first"))
    return p


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained model from ``model.pt`` (file, pretrain folder or run folder); eval mode on ``device``.

    Returns ``(model, meta)``; meta: model_config (dict), kind, latent_dim, in_channels, roi_size_zyx, config_hash,
    step, sha256 (of the file), path, n_params, and ``extra`` (preprocess settings, noise, seed, ...).
    """
    from radae.models.registry import build_model
    from radae.models.autoencoder import count_parameters

    p = resolve_model_path(path)
    obj = read_torch(p, MODEL_FORMAT)
    cfg = model_config_from(obj, p)
    try:
        model = build_model(cfg, int(obj["in_channels"]), tuple(obj["roi_size_zyx"]))
        model.load_state_dict(obj["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError) as e:
        raise TrainError(case_message(None, p, f"weights do not fit the stored model config ({str(e).splitlines()[0][:160]})",
                                      "the file is damaged or was edited; re-run pretraining")) from None
    model.to(device).eval()
    meta = {
        "model_config": cfg.model_dump(mode="json"),
        "kind": cfg.kind,
        "latent_dim": cfg.latent_dim,
        "in_channels": int(obj["in_channels"]),
        "roi_size_zyx": tuple(int(n) for n in obj["roi_size_zyx"]),
        "config_hash": str(obj.get("config_hash", "")),
        "step": int(obj.get("step", 0)),
        "sha256": file_sha256(p),
        "path": str(p.resolve()),
        "n_params": count_parameters(model),
        "extra": obj.get("extra", {}),
    }
    return model, meta
