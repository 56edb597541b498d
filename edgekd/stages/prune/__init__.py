"""Structured channel pruning (torch-pruning DepGraph), 2:4 semi-structured masks, and rebuilding pruned models
from their recorded layer shapes without the pruning library."""
