"""``pretrain:`` — the autoencoder, its corruption, loss, optimiser and budget."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from radae.config.base import _Model


# ----------------------------------------------------------------------------- pretrain
class SparseConfig(_Model):
    kind: Literal["none", "l1", "kl"] = "none"
    weight: float = Field(1e-3, ge=0.0)
    target: float = Field(0.05, gt=0.0, lt=1.0)


class ContractiveConfig(_Model):
    """Contractive penalty ``weight * ||d code / d input||_F^2`` (random-projection estimate, double backprop)."""

    weight: float = Field(0.0, ge=0.0)
    projections: int = Field(1, ge=1, le=64)


class ModelConfig(_Model):
    kind: Literal["dae", "vae"] = "dae"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = Field(1, ge=0, le=8)
    norm: Literal["batch", "instance", "group", "none"] = "batch"  # instance/group norm erase each patch's intensity level
    latent_dim: int = Field(64, ge=2, le=4096)
    latent_mode: Literal["pool", "flatten"] = "flatten"
    upsample: Literal["transpose", "upsample"] = "transpose"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    beta: float = Field(1.0, ge=0.0)
    kl_warmup_steps: int = Field(0, ge=0)
    sparse: SparseConfig = SparseConfig()
    contractive: ContractiveConfig = ContractiveConfig()

    @model_validator(mode="after")
    def _levels(self) -> "ModelConfig":
        if len(self.channels) != len(self.strides):
            raise ValueError("model.channels and model.strides must have the same length")
        if not self.channels:
            raise ValueError("model.channels needs at least one level")
        if min(self.channels) < 1 or min(self.strides) < 1:
            raise ValueError("model.channels and model.strides must be positive integers")
        if self.kind == "vae" and self.sparse.kind != "none":
            raise ValueError("model.sparse applies to the plain autoencoder (kind: dae); the VAE is regularised by beta * KL")
        return self


class NoiseConfig(_Model):
    # auto: CT gaussian, MR rician, PET poisson; mask: random 3D blocks zeroed (masked-volume corruption)
    kind: Literal["auto", "gaussian", "rician", "poisson", "mask", "none"] = "auto"
    sigma: tuple[float, float] = (0.05, 0.15)  # sampled uniformly per batch, in normalised units
    mask_ratio: float = Field(0.5, gt=0.0, lt=1.0)  # kind mask: probability that a block is zeroed
    mask_block_vox: int = Field(4, ge=1, le=64)  # kind mask: edge of the zeroed cubes, voxels

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v):
        if v[0] < 0 or v[1] < v[0]:
            raise ValueError("noise.sigma must be [low, high] with 0 <= low <= high")
        return v


class PretrainConfig(_Model):
    model: ModelConfig = ModelConfig()
    noise: NoiseConfig = NoiseConfig()
    loss: Literal["mse", "l1", "ssim_mse"] = "mse"
    ssim_weight: float = Field(0.5, ge=0.0, le=1.0)  # ssim_mse: w * (1 - SSIM) + (1 - w) * MSE
    sources: tuple[Literal["rois", "patches"], ...] = ("rois", "patches")
    include_evaluation_patients: bool = False
    # one autoencoder on several modalities (e.g. MR and PET lesions together) only when asked for
    allow_mixed_modalities: bool = False
    steps: int = Field(200, ge=1)
    epochs: float | None = Field(None, gt=0.0, le=100000.0)  # budget in passes over the training items (overrides steps)
    max_minutes: float | None = Field(None, gt=0.0)  # wall-clock budget of the training loop; ends the run early
    batch_size: int = Field(8, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_steps: int = Field(10, ge=0)
    grad_clip: float = Field(1.0, gt=0.0)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # channels_last_3d memory layout (CUDA and CPU; same maths, faster kernels)
    augment: bool = True
    val_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    eval_every: int = Field(50, ge=1)
    early_stopping_patience: int = Field(0, ge=0)  # in evaluations; 0 = off
    checkpoint_every: int = Field(100, ge=1)
    preview_every: int = Field(0, ge=0)  # steps; 0 = only at the end
    num_workers: int = Field(0, ge=0, le=64)
    loader: Literal["auto", "resident", "stream"] = "auto"  # resident: all patches in (GPU) memory; stream: DataLoader from disk
    log_every: int = Field(10, ge=1)  # steps between metrics rows
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False  # torch.use_deterministic_algorithms on GPU
