"""Built-in passes; importing this package registers them."""

from edgekd.passes import distill, lower, profile, prune, quantize, report, search

__all__ = ["distill", "lower", "profile", "prune", "quantize", "report", "search"]
