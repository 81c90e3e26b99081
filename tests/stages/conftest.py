"""Stage tests reuse the library tests' fixtures: the extract stage's tiny run folder and the tiny demo config."""
from tests.features.conftest import tiny_run  # noqa: F401
from tests.report.conftest import tiny_config  # noqa: F401
