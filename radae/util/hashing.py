"""Content hashes of inputs (files and DICOM folders), memoised by (path, size, mtime)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

_MEMO: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def stable_hash(obj: Any) -> str:
    """sha256 of ``obj`` as sorted-key JSON (``str`` for what JSON cannot hold): settings and config hashes."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, or of a folder's files (sorted relative names + bytes)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode())
            h.update(bytes.fromhex(file_sha256(f)))
    else:
        with open(p, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    digest = h.hexdigest()
    with _LOCK:
        _MEMO[key] = digest
    return digest


def json_sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
