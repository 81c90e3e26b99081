"""The tiny-run numbers the README quotes are what the shipped demo pipeline gives on the tiny test run.

Regenerate after a change that moves them: ``python tests/tinyrun.py --write`` (rebuilds the tiny run, rewrites the
block between the README's ``tiny-run`` markers).
"""
from tests.tinyrun import readme_block, readme_quoted_block


def test_readme_tiny_run_numbers_match_the_run(tiny_run):
    assert readme_quoted_block().strip() == readme_block(tiny_run).strip(), (
        "README tiny-run numbers are stale: regenerate with `python tests/tinyrun.py --write`")
