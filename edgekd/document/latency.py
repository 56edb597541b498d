"""The latency section of a document, built from latency records alone, so the report of a compile and
``edgekd profile`` of any model file show the same section."""

from __future__ import annotations

from typing import Any

from edgekd.core.latency_source import SOURCES, source_of
from edgekd.document import svg
from edgekd.document.model import Figure, Section, Table, Text, num


def source_text(lat: dict[str, Any] | None) -> str:
    src = source_of(lat)
    if src is None:
        return "not measured"
    on = " (the target)" if src == "measured-host" and lat and lat.get("on_target") else ""
    return SOURCES.get(src, src) + on


def _footnote(latencies: list[tuple[str, dict[str, Any]]]) -> str:
    """What the table's figures are: derived throughput, own peak memory, the tail's sample count, the load."""
    loads = {str(lat.get("load_average")) for _, lat in latencies if lat.get("load_average")}
    load = next(iter(loads)) if len(loads) == 1 else None
    parts = [
        "inf/s (derived) is batch / mean latency of sequential runs, not a throughput test",
        "own peak MB is the resident memory a model added while it loaded and warmed up (the process's VmHWM above "
        "its size before), not the process's peak",
        "p99 (1 run) means the timed runs leave one sample at or above the 99th percentile (raise profile.runs)",
    ]
    if load:
        parts.append(f"load average (1, 5, 15 min) around the measurement: {load}")
    return "; ".join(parts) + "."


def latency_sections(latencies: list[tuple[str, dict[str, Any]]], context: str = "") -> list[Section]:
    """Latency table, distribution figure and per-layer top-k for (label, latency record) pairs."""
    sec = Section("Latency")
    if context:
        sec.blocks.append(Text(context))
    if not latencies:
        sec.blocks.append(Text("No latency was measured in this run (no profile pass)."))
        return [sec]
    rows = []
    for label, lat in latencies:
        pred = lat.get("predicted") or {}
        p99 = num(lat.get("p99_ms"), "{:.3f}") + (" (1 run)" if lat.get("p99_samples") == 1 else "")
        rows.append(
            [
                label,
                *(num(lat.get(k), "{:.3f}") for k in ("p50_ms", "p90_ms")),
                p99,
                *(num(lat.get(k), "{:.3f}") for k in ("mean_ms", "std_ms")),
                num(lat.get("throughput"), "{:.0f}") + (" (derived)" if lat.get("throughput_derived") else ""),
                num(lat.get("init_ms"), "{:.1f}"),
                num(lat.get("peak_rss_mb"), "{:.0f}"),
                f"**{source_text(lat)}**",
                lat.get("where", ""),
                num(pred.get("p50_ms"), "{:.3f}") if pred else "—",
            ]
        )
    header = ["model", "p50 ms", "p90", "p99", "mean", "std", "inf/s", "init ms", "own peak MB", "source", "where"]
    sec.blocks.append(Table([*header, "predicted p50 on target"], rows))
    sec.blocks.append(Text(_footnote(latencies)))
    measured = [(label, lat) for label, lat in latencies if lat.get("p50_ms") is not None and lat.get("measured", True)]
    if measured:
        sec.blocks.append(
            Figure(
                svg.ranges([(label.strip("`"), lat) for label, lat in measured], "Latency distribution per artifact"),
                "Latency distribution of each artifact over its timed runs (min-max, p50-p90, p99).",
            )
        )
    layers = Section("Per-layer latency (top-k)")
    for label, lat in latencies:
        top = lat.get("per_layer")
        pred = (lat.get("predicted") or {}).get("per_layer")
        if not top and lat.get("per_layer_unsupported"):  # asked for, and the runtime has no profiler: say so
            layers.blocks.append(Text(f"{label}: {lat['per_layer_unsupported']}."))
        for what, rows_, src in (("measured", top, source_text(lat)), ("predicted", pred, "predicted")):
            if not rows_:
                continue
            layers.blocks.append(Text(f"{label}: {len(rows_)} slowest layers, {src}."))
            layers.blocks.append(
                Table(
                    ["layer", "op / kernel", "avg ms", "share"],
                    [
                        [f"`{r['name']}`", r["op_type"], num(r["avg_ms"], "{:.4f}"), f"{100 * r['share']:.1f}%"]
                        for r in rows_
                    ],
                )
            )
            layers.blocks.append(
                Figure(
                    svg.hbars(
                        [(r["name"], r.get("median_ms", r["avg_ms"])) for r in rows_],
                        f"Slowest layers ({what}): {label.strip('`')}",
                        "ms per inference",
                        [f"({100 * r['share']:.0f}%)" for r in rows_],
                    ),
                    f"Top-{len(rows_)} layers of {label}, {src}.",
                )
            )
    if not layers.blocks:
        layers.blocks.append(Text("No per-layer profile (profile.per_layer: 0, or the runtime gives none)."))
    return [sec, layers]
