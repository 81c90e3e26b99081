"""Importing this package registers every stage with radae.runner (order: config.STAGES)."""
from radae.stages import ingest  # noqa: F401
from radae.stages import preprocess  # noqa: F401
