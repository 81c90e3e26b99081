"""The README's YAML reference is generated from the config models; this keeps it current."""
from pathlib import Path

from radae.config.doc import markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_reference_matches_models():
    text = README.read_text()
    start, end = "<!-- config-reference:start -->\n", "\n<!-- config-reference:end -->"
    assert start in text and end in text, "README lost its config-reference markers"
    block = text.split(start, 1)[1].split(end, 1)[0]
    assert block.strip() == markdown().strip(), "README reference is stale: regenerate with radae reference"


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
