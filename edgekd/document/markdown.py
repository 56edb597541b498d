"""Render a document as Markdown."""

from __future__ import annotations

from edgekd.document.model import Bullets, Document, Figure, Section, Table, Text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sections_to_markdown(sections: list[Section], level: int = 2, figures: str = "Figure in report.html") -> list[str]:
    """Markdown lines of ``sections``; each figure becomes its caption after ``figures`` (where the figure is)."""
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
                lines += [f"*{figures}: {b.caption}*", ""]
    return lines


def document_to_markdown(doc: Document) -> str:
    return "\n".join([f"# {doc.title}", "", *sections_to_markdown(doc.sections)])
