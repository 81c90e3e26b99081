"""Read a finished (or partly finished) run folder for the report, never recomputing anything.

Every reader returns ``None`` when its file is absent or unreadable and records why in
:attr:`RunFolder.notes`, so a section can say plainly "not available: <file> is missing" instead
of crashing or inventing numbers. Every file that was read is listed with its sha256 in
:attr:`RunFolder.inputs` (shown in the reproducibility appendix).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from radae.util.hashing import file_sha256

logger = logging.getLogger(__name__)


@dataclass
class RunFolder:
    """Lazy, memoised access to the files of ``runs/<name>/`` (paths relative to ``run_dir``)."""

    run_dir: Path
    inputs: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of what was read
    notes: dict[str, str] = field(default_factory=dict)  # relative path -> why it could not be read
    _cache: dict[tuple[str, str], object] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def _read(self, rel: str, reader, kind: str):
        if (rel, kind) in self._cache:
            return self._cache[(rel, kind)]
        p = self.path(rel)
        value = None
        if not p.is_file():
            self.notes[rel] = "missing"
        else:
            try:
                value = reader(p)
                self.inputs[rel] = file_sha256(p)
            except Exception as e:  # noqa: BLE001 - any unreadable file becomes a visible note, not a crash
                logger.warning("report: cannot read %s: %s", p, e)
                self.notes[rel] = f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                value = None
        self._cache[(rel, kind)] = value
        return value

    def table(self, rel: str) -> pd.DataFrame | None:
        """A Parquet or CSV table (CSV read with strings kept as strings, ids as text, empty cells as NaN)."""
        if rel.endswith(".parquet"):
            return self._read(rel, pd.read_parquet, "table")
        return self._read(rel, lambda p: pd.read_csv(p, keep_default_na=True, dtype={"case_id": str, "patient_id": str}), "table")

    def json(self, rel: str) -> dict | None:
        out = self._read(rel, lambda p: json.loads(p.read_text()), "json")
        return out if isinstance(out, dict) else None

    def yaml(self, rel: str) -> dict | None:
        out = self._read(rel, lambda p: yaml.safe_load(p.read_text()), "yaml")
        return out if isinstance(out, dict) else None

    def text(self, rel: str) -> str | None:
        return self._read(rel, lambda p: p.read_text(errors="replace"), "text")

    def binary(self, rel: str) -> bytes | None:
        return self._read(rel, lambda p: p.read_bytes(), "bytes")

    def sha256(self, rel: str) -> str | None:
        """Content hash of a file without loading it for anything else (e.g. model.pt)."""
        return self._read(rel, file_sha256, "sha256")

    def files(self, pattern: str) -> list[str]:
        """Relative paths matching a glob pattern, sorted (e.g. ``pretrain/previews/*.png``)."""
        return sorted(str(p.relative_to(self.run_dir)) for p in self.run_dir.glob(pattern) if p.is_file())

    def stage_meta(self, stage: str) -> dict | None:
        """``<stage>/_stage.json`` (status, key, seconds, failures) as written by the runner."""
        return self.json(f"{stage}/_stage.json")

    def why(self, *rels: str) -> str:
        """One line naming the absent/unreadable files among ``rels`` (for 'not available' notes)."""
        parts = []
        for rel in rels:
            if rel in self.notes:
                parts.append(f"{rel} is {self.notes[rel]}")
            elif not self.exists(rel):
                parts.append(f"{rel} is missing")
        return "; ".join(parts)
