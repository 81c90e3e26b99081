"""The few kinds of content a report section is made of; the template renders each kind.

Text is escaped by the template unless it is :class:`markupsafe.Markup` (key-number spans,
links); tables hold cells that are either plain values or Markup.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from markupsafe import Markup


@dataclass(frozen=True)
class Paragraph:
    html: Markup | str
    kind: str = "p"


@dataclass(frozen=True)
class Heading:
    text: str
    kind: str = "h3"


@dataclass(frozen=True)
class Note:
    """A plain statement that something is not available (and why), or a caveat."""

    text: Markup | str
    kind: str = "note"


@dataclass(frozen=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: Markup | str = ""
    kind: str = "table"
    numeric: Sequence[bool] = ()  # right-align these columns
    wide: Sequence[bool] = ()  # long free text: give these columns room
    collapsed: bool = False  # behind a <details> toggle (long reference tables)


@dataclass(frozen=True)
class Figure:
    uri: str  # data:image/png;base64,...
    caption: Markup | str
    alt: str
    kind: str = "figure"


@dataclass(frozen=True)
class Pre:
    text: str
    caption: Markup | str = ""
    collapsed: bool = False
    kind: str = "pre"


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    available: bool = True

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self

    def missing(self, what: str, why: str) -> "Section":
        """Say plainly that ``what`` cannot be shown and why (no numbers are made up)."""
        self.blocks.append(Note(f"Not available: {what} — {why}."))
        return self
