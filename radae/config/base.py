"""What every config model shares: the strict frozen base model, seeds, the stage names, hashing, the data root."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from radae.util.hashing import stable_hash  # noqa: F401 - re-exported (radae.config.stable_hash)


#: a seed every consumer takes (numpy's SeedSequence wants >= 0; torch.manual_seed and NumPy's legacy API want < 2**32)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

STAGES = ("ingest", "preprocess", "pretrain", "extract", "benchmark", "report")
MAX_ROI_VOX = 256  # a sane upper bound per axis for a fixed-size ROI


def data_root() -> Path:
    """The real-data root: env ``RADAE_DATA`` or ``../shared/data`` next to the project root."""
    env = os.environ.get("RADAE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[3] / "shared" / "data").resolve()


class _Model(BaseModel):
    # allow_inf_nan=False: `hu_min: .nan` (or .inf) is refused here, not cached as NaN ROIs three stages later
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)



