"""Importing this package registers every stage with radae.runner (order: config.STAGES)."""
from radae.stages import ingest  # noqa: F401
from radae.stages import preprocess  # noqa: F401
from radae.stages import pretrain  # noqa: F401
from radae.stages import extract  # noqa: F401
from radae.stages import benchmark  # noqa: F401
from radae.stages import report  # noqa: F401
