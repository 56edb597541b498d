"""The student search's section of the report, from result.json's ``search``."""

from __future__ import annotations

from typing import Any

from edgekd.document import svg
from edgekd.document.model import Figure, Section, Table, Text, count, mmacs, num


def search_section(s: dict[str, Any]) -> Section:
    """The search's section: the proxy, the budget, a score-vs-cost plot of every candidate and the Pareto set."""
    sec = Section("Student search")
    src = s.get("latency_source") or ("measured-host" if s.get("latency") else "none")
    use_lat = src in ("measured-host", "predicted", "measured-device")
    cost_key, cost_label = ("latency_ms", "latency, ms") if use_lat else ("macs", "MACs")
    if use_lat:
        cost_label += " (predicted)" if src == "predicted" else " (measured on host)"
    sec.blocks.append(
        Text(
            f"Proxy **{s.get('proxy')}**, {s.get('evaluated_unique', '?')} candidates scored of {s.get('space_size')} "
            f"in {s.get('seconds', 0):.0f} s; budget {s.get('budget')}. Candidate latency: "
            f"{s.get('latency') or 'not measured (MACs used as cost)'}."
        )
    )
    history = s.get("history") or s.get("pareto") or []
    chosen = s.get("chosen") or {}

    def key(p: dict[str, Any]) -> tuple[Any, ...]:  # any search space: its label, else the ResNet genes (v1 files)
        if "label" in p:
            return (p["label"],)
        return (tuple(p["blocks"]), tuple(p["widths"]), p["kernel"])

    front = {key(p) for p in s.get("pareto", [])}

    points = []
    seen = set()
    for p in history:
        if p.get(cost_key) is None or p.get("score") is None or key(p) in seen:  # null score: scored worst
            continue
        seen.add(key(p))
        label = p.get("label") or f"{p['blocks']} x {p['widths']} k{p['kernel']}"
        points.append(
            svg.Point(
                float(p[cost_key]),
                float(p["score"]),
                label=("chosen " if key(p) == key(chosen) else "") + label,
                group="Pareto set" if key(p) in front else "candidate",
                highlight=bool(chosen) and key(p) == key(chosen),
            )
        )
    sec.blocks.append(
        Figure(
            svg.scatter(points, "Search: proxy score vs cost", cost_label, f"{s.get('proxy')} score", ["Pareto set"]),
            f"Every evaluated candidate (score vs {cost_label}); the Pareto set is joined; the chosen student is red.",
        )
    )
    rows = []
    for p in s.get("pareto", []):
        mark = " **← chosen**" if chosen and key(p) == key(chosen) else ""
        rows.append(
            [
                p.get("label") or f"blocks {p['blocks']}, widths {p['widths']}, kernel {p['kernel']}",
                num(p["score"], "{:.4g}"),
                count(p["params"]),
                mmacs(p["macs"]),
                num(p.get("latency_ms"), "{:.3f}") + mark,
            ]
        )
    sec.blocks.append(Table(["candidate", "score", "params", "MACs", "latency ms"], rows))
    if s.get("confirmed"):
        sec.blocks.append(
            Text(
                "Before a choice was accepted its latency was measured again; it is kept when the median of every "
                "reading is within the budget (one lucky reading does not make it):"
            )
        )
        sec.blocks.append(
            Table(
                ["candidate", "readings ms", "median ms", "budget ms", "verdict"],
                [
                    [
                        m["label"],
                        ", ".join(f"{r:.3f}" for r in m["readings_ms"]),
                        f"{m['median_ms']:.3f}",
                        f"{m['budget_ms']:g}",
                        "within" if m["within"] else "over: not chosen",
                    ]
                    for m in s["confirmed"]
                ],
            )
        )
    return sec
