import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real shared data (../shared/data or $RADAE_DATA). Skips if absent, fails if RADAE_REQUIRE_DATA=1."""
    from radae.config import data_root as _root

    root = _root()
    if not (root / "README.md").exists():
        if os.environ.get("RADAE_REQUIRE_DATA") == "1":
            pytest.fail(f"RADAE_REQUIRE_DATA=1 but the shared data is absent at {root} (set RADAE_DATA)")
        pytest.skip(f"shared data not found at {root} (set RADAE_DATA)")
    return root


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield
