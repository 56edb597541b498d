"""Built-in passes; importing this package registers them."""

from edgekd.passes import distill, lower, profile, quantize, report

__all__ = ["distill", "lower", "profile", "quantize", "report"]
