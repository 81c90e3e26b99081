"""The README's cheap commands (validate, info, synth, -h, --version) run as written from a folder that is not the checkout."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHEAP = {"validate", "info", "synth", "-h", "--help", "--version"}


def readme_commands() -> list[list[str]]:
    """``radae ...`` command lines of the README's bash blocks whose subcommand is cheap (comments stripped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line.startswith(".venv/bin/radae"):
                continue
            argv = shlex.split(line)[1:]
            if argv and (argv[0] in CHEAP or "-h" in argv):
                out.append(argv)
    return out


def _radae(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RADAE_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "radae.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_has_cheap_commands_to_walk():
    subs = {a[0] for a in readme_commands()}
    assert {"validate", "info"} <= subs, subs


def _own_folder_recipe(folder: Path) -> None:
    """What the README's own-folder recipe has the user do by hand: a manifest with outcomes, my.yaml from the template."""
    import pandas as pd

    from radae.data.synth import generate_cohort

    df = generate_cohort(folder / "scans", cases=4, seed=0, size_vox=24, unlabeled=0)
    for col in ("image", "mask"):
        df[col] = [str(folder / "scans" / p) for p in df[col]]
    df.to_csv(folder / "my_manifest.csv", index=False)
    text = (ROOT / "pipelines" / "my_study.yaml").read_text()
    assert "{label: outcome}" in text
    (folder / "my.yaml").write_text(text.replace("{label: outcome}", "{label: label}"))


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_runs_from_another_folder(argv, tmp_path):
    argv = [a.replace("/data/my_study", str(tmp_path)) for a in argv]
    if "my.yaml" in argv:
        _own_folder_recipe(tmp_path)
    r = _radae(argv, tmp_path)
    assert r.returncode == 0, f"radae {' '.join(argv)} from {tmp_path}: {r.stderr[-1500:]}"
    if argv[0] == "validate":
        assert r.stdout.startswith("ok: "), r.stdout
        if argv[1].endswith("demo.yaml"):  # the synthetic cohort is written into the run folder, under the current folder
            assert (tmp_path / "runs" / "demo" / "synth" / "manifest.csv").is_file()


def test_cli_help_and_version_from_another_folder(tmp_path):
    for argv in (["-h"], ["--version"], ["features", "-h"], ["run", "-h"]):
        r = _radae(argv, tmp_path)
        assert r.returncode == 0, (argv, r.stderr)
    assert re.fullmatch(r"radae \d+\.\d+\.\d+\s*", _radae(["--version"], tmp_path).stdout)
    assert "only warnings and errors" in _radae(["run", "-h"], tmp_path).stdout
