"""MetaImage (.mha / .mhd) files whose pixel data is missing or cut off: say which file and how many bytes.

ITK's reader reports both as "No such file or directory"; a header copied without its ``.raw`` and an interrupted
copy are the usual causes, and the fix differs (copy the data file vs copy again).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4, "MET_LONG": 4,
          "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
_MAX_HEADER = 1 << 16


def _header(path: Path) -> tuple[dict, int] | None:
    """Header fields (keys lower-cased) and the byte offset after the ElementDataFile line, or None if not MetaImage."""
    with open(path, "rb") as fh:
        head = fh.read(_MAX_HEADER)
    fields, pos = {}, 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            return None
        key, sep, value = head[pos:end].decode("latin-1").partition("=")
        if not sep:
            return None
        fields[key.strip().lower()] = value.strip()
        pos = end + 1
        if key.strip().lower() == "elementdatafile":
            return fields, pos
    return None


def metaimage_problem(path: str | Path) -> tuple[str, str] | None:
    """``(problem, advice)`` when a MetaImage's pixel data file is missing or shorter than its header says, else None."""
    path = Path(path)
    try:
        parsed = _header(path)
        if parsed is None:
            return None
        fields, offset = parsed
        data = fields["elementdatafile"]
        size = int(np.prod([int(v) for v in fields["dimsize"].split()], dtype=np.int64))
        expected = size * _BYTES[fields["elementtype"].upper()] * int(fields.get("elementnumberofchannels", "1"))
    except (OSError, KeyError, ValueError):
        return None
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if data.upper() == "LOCAL":
        have = path.stat().st_size - offset
        if not compressed and have < expected:
            return (f"MetaImage file is truncated: {have:,} of {expected:,} pixel bytes",
                    "the file was cut off (interrupted copy or download?); copy or export it again")
        return None
    if data.upper() == "LIST" or "%" in data:
        return None
    data_path = path.parent / data
    if not data_path.is_file():
        return (f"its pixel data file {data_path} (ElementDataFile) does not exist",
                f"copy {data} next to the header {path.name}, or fix ElementDataFile in the header")
    have = data_path.stat().st_size
    if not compressed and have < expected:
        return (f"pixel data file {data_path} holds {have:,} of {expected:,} bytes",
                "the data file was cut off (interrupted copy?); copy or export it again")
    return None
