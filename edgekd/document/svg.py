"""Inline SVG charts for the HTML report, written directly (no plotting library): scatter, bars, latency ranges.

Each function returns one ``<svg>`` element (with a ``<title>`` for screen readers) sized by its viewBox, so the
report stays a single self-contained file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

W, H = 640, 360
PAD_L, PAD_R, PAD_T, PAD_B = 70, 20, 36, 50
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f", "#edc948"]
HIGHLIGHT = "#d62728"


@dataclass
class Point:
    x: float
    y: float
    label: str = ""
    group: str = ""
    highlight: bool = False


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _frame(title: str, body: list[str], height: int = H, width: int = W) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" class="chart" font-family="sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _axes(x_lo: float, x_hi: float, y_lo: float, y_hi: float, x_label: str, y_label: str) -> tuple[list[str], object]:
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(v: float) -> float:
        return PAD_L + (v - x_lo) / (x_hi - x_lo or 1) * pw

    def sy(v: float) -> float:
        return PAD_T + ph - (v - y_lo) / (y_hi - y_lo or 1) * ph

    out = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in _ticks(x_lo, x_hi):
        if x_lo <= t <= x_hi:
            out.append(
                f'<line x1="{sx(t):.1f}" y1="{PAD_T + ph}" x2="{sx(t):.1f}" y2="{PAD_T + ph + 4}" stroke="#666"/>'
            )
            out.append(f'<text x="{sx(t):.1f}" y="{PAD_T + ph + 17}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            out.append(f'<line x1="{PAD_L}" y1="{sy(t):.1f}" x2="{PAD_L + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
            out.append(f'<text x="{PAD_L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{PAD_L + pw / 2}" y="{H - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text x="14" y="{PAD_T + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {PAD_T + ph / 2})">'
        f"{escape(y_label)}</text>"
    )
    return out, (sx, sy)


def _range(values: Sequence[float], pad: float = 0.06) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = (hi - lo) or (abs(hi) or 1.0)
    return lo - span * pad, hi + span * pad


def scatter(points: Sequence[Point], title: str, x_label: str, y_label: str, line_groups: Sequence[str] = ()) -> str:
    """Points coloured by group; highlighted points drawn larger in red and labelled; ``line_groups`` are joined
    in x order (e.g. the Pareto front)."""
    if not points:
        return _frame(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'])
    x_lo, x_hi = _range([p.x for p in points])
    y_lo, y_hi = _range([p.y for p in points])
    body, (sx, sy) = _axes(x_lo, x_hi, y_lo, y_hi, x_label, y_label)  # type: ignore[misc]
    groups = list(dict.fromkeys(p.group for p in points))
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}
    for g in line_groups:
        pts = sorted((p for p in points if p.group == g), key=lambda p: p.x)
        if len(pts) > 1:
            path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color[g]}" stroke-width="1.5"/>')
    for p in sorted(points, key=lambda p: p.highlight):
        r, fill = (7, HIGHLIGHT) if p.highlight else (4, color[p.group])
        body.append(
            f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{r}" fill="{fill}" fill-opacity="0.8" stroke="#333" '
            f'stroke-width="0.5"><title>{escape(p.label)}</title></circle>'
        )
        if p.highlight:
            body.append(
                f'<text x="{sx(p.x) + 9:.1f}" y="{sy(p.y) - 8:.1f}" fill="{HIGHLIGHT}">{escape(p.label)}</text>'
            )
    legend_x = PAD_L + 8
    for i, g in enumerate(groups):
        if not g:
            continue
        y = PAD_T + 14 + 16 * i
        body.append(f'<circle cx="{legend_x}" cy="{y - 4}" r="4" fill="{color[g]}"/>')
        body.append(f'<text x="{legend_x + 8}" y="{y}">{escape(g)}</text>')
    return _frame(title, body)


def hbars(items: Sequence[tuple[str, float]], title: str, x_label: str, note: Sequence[str] = ()) -> str:
    """Horizontal bars, one per (label, value), top to bottom; optional text after each bar."""
    if not items:
        return _frame(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'], 80)
    row, left = 22, 230
    height = PAD_T + row * len(items) + 40
    hi = max(v for _, v in items) or 1.0
    pw = W - left - 90
    body = []
    for i, (label, v) in enumerate(items):
        y = PAD_T + i * row
        w = max(1.0, v / hi * pw)
        text = label if len(label) <= 34 else "…" + label[-33:]
        body.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(text)}<title>{escape(label)}</title></text>'
        )
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{COLORS[i % len(COLORS)]}"/>'
        )
        extra = f" {note[i]}" if i < len(note) and note[i] else ""
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}">{escape(_fmt(v) + extra)}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>')
    return _frame(title, body, height)


def ranges(items: Sequence[tuple[str, dict[str, float]]], title: str, x_label: str = "latency, ms") -> str:
    """One horizontal latency distribution per (label, stats): a min-max line, a p50-p90 box, a p99 tick and the
    median marked (the runner's summary statistics)."""
    if not items:
        return _frame(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'], 80)
    row, left = 34, 230
    height = PAD_T + row * len(items) + 50
    hi = max(s.get("max_ms") or s.get("p99_ms") or s["p50_ms"] for _, s in items) * 1.05
    pw = W - left - 30

    def sx(v: float) -> float:
        return left + v / hi * pw

    body = []
    for t in _ticks(0, hi):
        if t <= hi:
            body.append(f'<line x1="{sx(t):.1f}" y1="{PAD_T}" x2="{sx(t):.1f}" y2="{height - 40}" stroke="#eee"/>')
            body.append(f'<text x="{sx(t):.1f}" y="{height - 26}" text-anchor="middle">{_fmt(t)}</text>')
    for i, (label, s) in enumerate(items):
        y = PAD_T + i * row + row / 2
        lo = s.get("min_ms") or s["p50_ms"]
        top = s.get("max_ms") or s.get("p99_ms") or s["p50_ms"]
        p90 = s.get("p90_ms") or s["p50_ms"]
        text = label if len(label) <= 34 else "…" + label[-33:]
        body.append(
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{escape(text)}<title>{escape(label)}</title></text>'
        )
        body.append(f'<line x1="{sx(lo):.1f}" y1="{y}" x2="{sx(top):.1f}" y2="{y}" stroke="#888"/>')
        c = COLORS[i % len(COLORS)]
        body.append(
            f'<rect x="{sx(s["p50_ms"]):.1f}" y="{y - 8}" width="{max(1.5, sx(p90) - sx(s["p50_ms"])):.1f}" '
            f'height="16" fill="{c}" fill-opacity="0.6" stroke="{c}"/>'
        )
        body.append(f'<line x1="{sx(s["p50_ms"]):.1f}" y1="{y - 10}" x2="{sx(s["p50_ms"]):.1f}" y2="{y + 10}" '
                    'stroke="#000" stroke-width="2"/>')  # fmt: skip
        if s.get("p99_ms") is not None:
            body.append(f'<line x1="{sx(s["p99_ms"]):.1f}" y1="{y - 6}" x2="{sx(s["p99_ms"]):.1f}" y2="{y + 6}" '
                        'stroke="#d62728" stroke-width="2"/>')  # fmt: skip
    body.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)} '
        "(line: min-max, box: p50-p90, black: p50, red: p99)</text>"
    )
    return _frame(title, body, height)
