"""Where a latency figure came from: measured on the device, measured on this host, or predicted."""

from __future__ import annotations

from typing import Any

SOURCES = {
    "measured-device": "measured on the device",
    "measured-host": "measured on this host",
    "predicted": "predicted",
}


def source_of(lat: dict[str, Any] | None) -> str | None:
    """measured-device, measured-host or predicted (v1 records lack ``source``)."""
    if not lat:
        return None
    if lat.get("source"):
        return str(lat["source"])
    if not lat.get("measured", True):
        return "predicted"
    return "measured-device" if str(lat.get("where", "")).startswith("device ") else "measured-host"
