"""Render a document as one self-contained HTML file, plots as inline SVG (no scripts, nothing fetched)."""

from __future__ import annotations

import re
from html import escape

from edgekd.document.model import Bullets, Document, Figure, Section, Table, Text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #4e79a7;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;
border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.88em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f5f8}
tr:nth-child(even) td{background:#fafbfc}code{font-size:.92em;background:#f2f2f2;padding:0 .2em;border-radius:3px}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}svg.chart{max-width:100%;height:auto;border:1px solid #eee}
"""

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> str:
    """Escape ``text`` and turn its `code` and **bold** markup into HTML."""
    out = escape(text, quote=False)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


def sections_to_html(sections: list[Section]) -> list[str]:
    parts: list[str] = []
    for sec in sections:
        if sec.title:
            anchor = re.sub(r"[^a-z0-9]+", "-", sec.title.lower()).strip("-")
            parts.append(f'<h2 id="{anchor}">{escape(sec.title)}</h2>')
        for b in sec.blocks:
            if isinstance(b, Text):
                parts.append(f"<p>{inline(b.text)}</p>")
            elif isinstance(b, Table):
                head = "".join(f"<th>{inline(h)}</th>" for h in b.header)
                body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Bullets):
                parts.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, Figure):
                parts.append(f"<figure>{b.svg}<figcaption>{inline(b.caption)}</figcaption></figure>")
    return parts


def document_to_html(doc: Document) -> str:
    body = "\n".join(sections_to_html(doc.sections))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(doc.title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n<h1>{escape(doc.title)}</h1>\n{body}\n</body></html>\n"
    )
