"""Declarative search spaces. A candidate is a dict of genes; ``build`` turns it into a zoo model spec."""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field, model_validator

from edgekd.config import Strict


class ResNetSpace(Strict):
    """ResNet-like students: blocks per stage, width per stage, kernel size (``edgekd.zoo`` resnet)."""

    type: str = "resnet"
    blocks: list[list[int]] = Field(default_factory=lambda: [[1, 2, 3]] * 3)
    widths: list[list[int]] = Field(default_factory=lambda: [[8, 16, 24], [16, 32, 48], [32, 64, 96]])
    kernel: list[int] = Field(default_factory=lambda: [3])

    @model_validator(mode="after")
    def _shape(self) -> ResNetSpace:
        if self.type != "resnet":
            raise ValueError(f"type {self.type!r}: only 'resnet' spaces exist so far")
        if len(self.blocks) != len(self.widths) or not self.blocks:
            raise ValueError("blocks and widths need one list of choices per stage, the same number of stages")
        for name, choices in (("blocks", self.blocks), ("widths", self.widths), ("kernel", [self.kernel])):
            for i, c in enumerate(choices):
                if not c or any(v < 1 for v in c):
                    raise ValueError(f"{name}[{i}]: give at least one choice, every choice >= 1")
        if any(k % 2 == 0 for k in self.kernel):
            raise ValueError("kernel sizes must be odd")
        return self

    def genes(self) -> list[list[int]]:
        return [*self.blocks, *self.widths, self.kernel]

    def size(self) -> int:
        n = 1
        for g in self.genes():
            n *= len(g)
        return n

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.choice(g) for g in self.genes())

    def mutate(self, cand: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
        """Change one gene that has another choice."""
        genes = self.genes()
        free = [i for i, g in enumerate(genes) if len(g) > 1]
        if not free:
            return cand
        i = rng.choice(free)
        out = list(cand)
        out[i] = rng.choice([v for v in genes[i] if v != cand[i]])
        return tuple(out)

    def crossover(self, a: tuple[int, ...], b: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))

    def params(self, cand: tuple[int, ...], in_channels: int, num_classes: int) -> dict[str, Any]:
        n = len(self.blocks)
        return {
            "blocks": list(cand[:n]),
            "widths": list(cand[n : 2 * n]),
            "kernel": cand[-1],
            "in_channels": in_channels,
            "num_classes": num_classes,
        }

    def enumerate(self) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = [()]
        for g in self.genes():
            out = [(*c, v) for c in out for v in g]
        return out
