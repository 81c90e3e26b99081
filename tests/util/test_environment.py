"""Package versions in provenance: the folder-name shortcut gives what importlib.metadata gives."""
from __future__ import annotations

import importlib.metadata as md
import sys

import pytest

from radae.util import environment


def _reference(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


@pytest.fixture
def fresh_lookup():
    environment._version.cache_clear()
    environment._metadata_folders.cache_clear()
    yield
    environment._version.cache_clear()
    environment._metadata_folders.cache_clear()


def test_every_listed_package_has_its_metadata_version(fresh_lookup):
    names = environment.PACKAGES + ("pip", "typer", "surely-not-installed-radae-test")
    assert {n: environment._version(n) for n in names} == {n: _reference(n) for n in names}
    assert environment._version("surely-not-installed-radae-test") is None


def test_first_folder_on_sys_path_wins_and_egg_info_goes_to_metadata(tmp_path, monkeypatch, fresh_lookup):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, version in ((first, "1.0"), (second, "2.0")):
        info = folder / f"Fake_Pkg-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-pkg\nVersion: {version}\n")
    egg = second / "eggy.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: eggy\nVersion: 0.3\n")
    monkeypatch.setattr(sys, "path", [str(first), str(second), str(tmp_path / "absent")] + sys.path)
    assert environment._version("fake.pkg") == "1.0" == _reference("fake-pkg")
    assert environment._version("eggy") == "0.3" == _reference("eggy")


def test_a_zip_on_sys_path_falls_back_to_metadata(tmp_path, monkeypatch, fresh_lookup):
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive: not a folder to list
    monkeypatch.setattr(sys, "path", [str(archive)] + sys.path)
    assert environment._metadata_folders()[2] is False
    assert environment._version("surely-not-installed-radae-test") is None
    assert environment._version("numpy") == _reference("numpy")
