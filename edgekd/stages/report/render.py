"""``report.md`` and ``report.html`` of a result.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekd.document.html import document_to_html
from edgekd.document.markdown import document_to_markdown
from edgekd.stages.report.document import build_document


def render_markdown(result: dict[str, Any], stages: Sequence[Any] = ()) -> str:
    return document_to_markdown(build_document(result, stages))


def render_html(result: dict[str, Any], stages: Sequence[Any] = ()) -> str:
    return document_to_html(build_document(result, stages))
