"""Training-free student search: zero-cost proxies (DisWOT and baselines)."""
