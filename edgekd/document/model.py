"""A document: sections of text, tables, bullet lists and figures, rendered to Markdown or HTML.

Inline markup in text and cells: ``code`` and **bold** (both renderers understand them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Text:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Figure:
    svg: str
    caption: str


Block = Text | Table | Bullets | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]


# --------------------------------------------------------------------------- formatting helpers


def num(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def count(v: Any) -> str:
    return f"{int(v):,}" if v else "—"


def mmacs(v: Any) -> str:
    return f"{v / 1e6:.1f}M" if v else "—"
