"""Key numbers: every number the page states as a result goes through here exactly once.

:meth:`KeyNumbers.put` rounds a value the way it is displayed, remembers it under a dotted key
(``"benchmark.classification.learned.auc"``) and returns the HTML ``<span data-key="...">``
that shows it. ``report/summary.json`` is written from the same store, so the page and the JSON
cannot disagree (the browser test checks that they do not).

Formats: ``"int"`` (counts), ``".3f"`` (fixed decimals), ``".3g"`` (significant digits, used for
p-values). The stored value is ``float(displayed text)`` so the comparison is exact; a missing or
non-finite value is stored as ``null`` and shown as ``n/a``.
"""
from __future__ import annotations

import math
import re

from markupsafe import Markup, escape

_SEGMENT = re.compile(r"[^A-Za-z0-9_+-]+")
NA = "n/a"


def key_segment(name: object) -> str:
    """A dotted-key segment from a free name (feature set, metric, ...): no dots or spaces."""
    s = _SEGMENT.sub("_", str(name)).strip("_")
    return s or "_"


def format_number(value: object, fmt: str) -> str:
    """Text shown for ``value`` in format ``fmt`` (``int``, ``.Nf``, ``.Ng``); ``n/a`` if missing."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NA
    if not math.isfinite(v):
        return NA
    if fmt == "int":
        return str(int(round(v)))
    return format(v, fmt)


class KeyNumbers:
    """Store of displayed key numbers; ``put`` returns the span, ``as_dict`` the nested JSON."""

    def __init__(self) -> None:
        self._values: dict[str, int | float | None] = {}

    def put(self, key: str, value: object, fmt: str = ".3f", suffix: str = "") -> Markup:
        text = format_number(value, fmt)
        stored: int | float | None
        if text == NA:
            stored = None
        elif fmt == "int":
            stored = int(text)
        else:
            stored = float(text)
        if key in self._values and self._values[key] != stored:
            raise ValueError(f"report key {key!r} given two different values ({self._values[key]} and {stored})")
        self._values[key] = stored
        return Markup('<span class="num" data-key="{}">{}</span>{}').format(key, text, escape(suffix))

    def get(self, key: str) -> int | float | None:
        return self._values[key]

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def flat(self) -> dict[str, int | float | None]:
        return dict(sorted(self._values.items()))

    def as_dict(self) -> dict:
        """Nested dict: ``"a.b.c": 1`` becomes ``{"a": {"b": {"c": 1}}}`` (keys sorted)."""
        out: dict = {}
        for key, value in sorted(self._values.items()):
            node = out
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"report key {key!r} nests under a key that holds a number")
            if isinstance(node.get(parts[-1]), dict):
                raise ValueError(f"report key {key!r} is also the prefix of other keys")
            node[parts[-1]] = value
        return out


def lookup(nested: dict, key: str):
    """Value at a dotted key in the nested summary (KeyError if absent)."""
    node = nested
    for part in key.split("."):
        node = node[part]
    return node
