"""Render ``report.md`` from a ``result.json`` document (so ``edgekd report`` can re-render any run)."""

from __future__ import annotations

from typing import Any

from edgekd.report.document import Bullets, Document, Figure, Section, Table, Text, build_document


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sections_to_markdown(sections: list[Section], level: int = 2) -> list[str]:
    lines: list[str] = []
    for sec in sections:
        if sec.title:
            lines += ["#" * level + " " + sec.title, ""]
        for b in sec.blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Table):
                lines.append("| " + " | ".join(_cell(h) for h in b.header) + " |")
                lines.append("|" + "|".join("---" for _ in b.header) + "|")
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
                lines.append("")
            elif isinstance(b, Bullets):
                lines += [f"- {item}" for item in b.items] + [""]
            elif isinstance(b, Figure):
                lines += [f"*Figure in report.html: {b.caption}*", ""]
    return lines


def document_to_markdown(doc: Document) -> str:
    return "\n".join([f"# {doc.title}", "", *sections_to_markdown(doc.sections)])


def render_markdown(r: dict[str, Any]) -> str:
    return document_to_markdown(build_document(r))
