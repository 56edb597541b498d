"""Declarative search spaces. A candidate is a tuple of genes (one choice per gene); ``params`` turns it
into the keyword arguments of the space's zoo architecture (``arch``).

```yaml
space: {type: resnet, blocks: [[1, 2, 3], [1, 2, 3], [1, 2, 3]], widths: [[8, 16], [16, 32], [32, 64]], kernel: [3]}
space: {type: mobilenet, depths: [[1, 2], [1, 2, 3], [1, 2, 3]], widths: [[8, 16], [16, 24], [24, 32, 48]],
        expand: [[1, 3, 6], [3, 6], [3, 6]], kernel: [[3, 5], [3, 5], [3, 5]]}
space: {type: text-shrink, layers: [1, 2, 3], intermediate_size: [384, 768, 1536], heads: [6, 12]}   # text teachers
space: {type: shrink, widths: [25, 50, 75, 100], max_drop: 2}   # an image teacher's own stages, narrowed
```
"""

from __future__ import annotations

import random
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, PrivateAttr, Tag, model_validator

from edgekd.core.schema import Strict
from edgekd.models.zoo.staged import downsampling_for

Candidate = tuple[int, ...]


class _Space(Strict):
    """Gene bookkeeping shared by every space: sampling, mutation, crossover, enumeration."""

    arch: ClassVar[str]

    def genes(self) -> list[list[int]]:
        raise NotImplementedError

    def params(
        self, cand: Candidate, in_channels: int, num_classes: int, input_size: int | None = None
    ) -> dict[str, Any]:
        """The zoo keyword arguments of ``cand``; with ``input_size`` (pixels, the smaller side) the stem and the
        first stage downsample so that the final map is about 7 pixels (nothing changes at 28-32 pixels)."""
        raise NotImplementedError

    def describe(self, cand: Candidate) -> str:
        """A short human label of a candidate (reports, progress)."""
        parts = []
        for k, v in self.params(cand, 0, 0).items():
            if k not in ("in_channels", "num_classes") and v is not None:
                parts.append(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}")
        return " ".join(parts)

    def size(self) -> int:
        n = 1
        for g in self.genes():
            n *= len(g)
        return n

    def sample(self, rng: random.Random) -> Candidate:
        return tuple(rng.choice(g) for g in self.genes())

    def mutate(self, cand: Candidate, rng: random.Random) -> Candidate:
        """Change one gene that has another choice."""
        genes = self.genes()
        free = [i for i, g in enumerate(genes) if len(g) > 1]
        if not free:
            return cand
        i = rng.choice(free)
        out = list(cand)
        out[i] = rng.choice([v for v in genes[i] if v != cand[i]])
        return tuple(out)

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))

    def enumerate(self) -> list[Candidate]:
        out: list[Candidate] = [()]
        for g in self.genes():
            out = [(*c, v) for c in out for v in g]
        return out


def _downsampled(input_size: int | None, stages: int) -> dict[str, int]:
    """The zoo's downsampling for ``input_size``, only where it differs from the stride-1 default."""
    if input_size is None:
        return {}
    return {k: v for k, v in downsampling_for(input_size, stages).items() if v != 1}


def _check_choices(named: list[tuple[str, list[list[int]]]], stages: int) -> None:
    for name, per_stage in named:
        if len(per_stage) != stages:
            raise ValueError(f"{name}: give one list of choices per stage ({stages} stages, as in widths)")
        for i, c in enumerate(per_stage):
            if not c or any(v < 1 for v in c):
                raise ValueError(f"{name}[{i}]: give at least one choice, every choice >= 1")


class ResNetSpace(_Space):
    """ResNet-like students: blocks per stage, width per stage, one kernel size (zoo ``resnet``)."""

    arch: ClassVar[str] = "resnet"
    type: Literal["resnet"] = "resnet"
    blocks: list[list[int]] = Field(default_factory=lambda: [[1, 2, 3]] * 3)
    widths: list[list[int]] = Field(default_factory=lambda: [[8, 16, 24], [16, 32, 48], [32, 64, 96]])
    kernel: list[int] = Field(default_factory=lambda: [3])

    @model_validator(mode="after")
    def _shape(self) -> ResNetSpace:
        if len(self.blocks) != len(self.widths) or not self.blocks:
            raise ValueError("blocks and widths need one list of choices per stage, the same number of stages")
        _check_choices([("blocks", self.blocks), ("widths", self.widths)], len(self.blocks))
        _check_choices([("kernel", [self.kernel])], 1)
        if any(k % 2 == 0 for k in self.kernel):
            raise ValueError("kernel sizes must be odd")
        return self

    def genes(self) -> list[list[int]]:
        return [*self.blocks, *self.widths, self.kernel]

    def params(
        self, cand: Candidate, in_channels: int, num_classes: int, input_size: int | None = None
    ) -> dict[str, Any]:
        n = len(self.blocks)
        return _downsampled(input_size, n) | {
            "blocks": list(cand[:n]),
            "widths": list(cand[n : 2 * n]),
            "kernel": cand[-1],
            "in_channels": in_channels,
            "num_classes": num_classes,
        }


class MobileNetSpace(_Space):
    """MobileNet-like students of inverted residual blocks (zoo ``mobilenet``): per stage, the depth
    (blocks), the width (output channels), the expand ratio and the depthwise kernel size."""

    arch: ClassVar[str] = "mobilenet"
    type: Literal["mobilenet"]
    depths: list[list[int]] = Field(default_factory=lambda: [[1, 2], [1, 2, 3], [1, 2, 3]])
    widths: list[list[int]] = Field(default_factory=lambda: [[8, 16], [16, 24, 32], [32, 48, 64]])
    expand: list[list[int]] = Field(default_factory=lambda: [[1, 3, 6]] * 3)
    kernel: list[list[int]] = Field(default_factory=lambda: [[3, 5]] * 3)
    stem: int = Field(default=16, ge=1, description="channels of the stem convolution (fixed)")
    head: int | None = Field(default=None, ge=1, description="channels of a 1x1 head before pooling (fixed)")

    @model_validator(mode="after")
    def _shape(self) -> MobileNetSpace:
        if not self.widths:
            raise ValueError("widths: give one list of choices per stage")
        n = len(self.widths)
        _check_choices(
            [("depths", self.depths), ("widths", self.widths), ("expand", self.expand), ("kernel", self.kernel)], n
        )
        if any(k % 2 == 0 for ks in self.kernel for k in ks):
            raise ValueError("kernel sizes must be odd")
        return self

    def genes(self) -> list[list[int]]:
        return [*self.depths, *self.widths, *self.expand, *self.kernel]

    def params(
        self, cand: Candidate, in_channels: int, num_classes: int, input_size: int | None = None
    ) -> dict[str, Any]:
        n = len(self.widths)
        return _downsampled(input_size, n) | {
            "depths": list(cand[:n]),
            "widths": list(cand[n : 2 * n]),
            "expand": list(cand[2 * n : 3 * n]),
            "kernel": list(cand[3 * n : 4 * n]),
            "stem": self.stem,
            "head": self.head,
            "in_channels": in_channels,
            "num_classes": num_classes,
        }


class TextShrinkSpace(_Space):
    """A Hugging Face text teacher shrunk (``student.arch: shrink``): how many of its layers are kept (spread over
    its depth, the last always kept), the FFN width and the attention heads each kept layer keeps (the most
    important channels and heads; every weight inherited). A gene left out keeps the teacher's value."""

    arch: ClassVar[str] = "shrink"
    type: Literal["text-shrink"]
    layers: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    intermediate_size: list[int] | None = Field(default=None, min_length=1)
    heads: list[int] | None = Field(default=None, min_length=1)
    keep: Literal["spread", "first", "every_other"] = "spread"

    @model_validator(mode="after")
    def _positive(self) -> TextShrinkSpace:
        for name in ("layers", "intermediate_size", "heads"):
            if any(v < 1 for v in getattr(self, name) or []):
                raise ValueError(f"{name}: every choice must be >= 1")
        return self

    def genes(self) -> list[list[int]]:
        return [sorted(set(g)) for g in (self.layers, self.intermediate_size, self.heads) if g]

    def params(
        self, cand: Candidate, in_channels: int, num_classes: int, input_size: int | None = None
    ) -> dict[str, Any]:
        genes = iter(cand)
        out: dict[str, Any] = {"layers": next(genes), "keep": self.keep}
        for name in ("intermediate_size", "heads"):
            if getattr(self, name):
                out[name] = next(genes)
        return out


class ShrinkSpace(_Space):
    """An image teacher shrunk (``student.arch: shrink``, :mod:`edgekd.models.shrink_image`): per stage of the
    teacher, the share of its channels kept (``widths``, percent) and how many of its removable repeated blocks
    are dropped (up to ``max_drop``; ``drop: false`` keeps them all). Every candidate inherits the teacher's
    weights. The genes depend on the teacher, so the search binds the space to it (:meth:`bind`) first."""

    arch: ClassVar[str] = "shrink"
    type: Literal["shrink"]
    widths: list[int] = Field(default_factory=lambda: [25, 50, 75, 100], min_length=1)
    drop: bool = True
    max_drop: int | None = Field(default=None, ge=0, description="at most this many blocks dropped per stage")
    round_to: int | None = Field(default=None, ge=1, description="channel counts rounded to a multiple of this")
    _removable: list[int] | None = PrivateAttr(default=None)
    _input_shape: list[int] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _percent(self) -> ShrinkSpace:
        if any(not 1 <= w <= 100 for w in self.widths):
            raise ValueError("widths: percentages of the teacher's channels kept, each in 1..100")
        return self

    def bind(self, removable_per_stage: list[int], input_shape: list[int]) -> None:
        """The teacher's stages (how many blocks each can drop) and the input shape the candidates trace with."""
        self._removable = list(removable_per_stage)
        self._input_shape = list(input_shape)

    def _bound(self) -> list[int]:
        if self._removable is None:
            raise ValueError("a shrink space is bound to its teacher (ShrinkSpace.bind) before it has genes")
        return self._removable

    def genes(self) -> list[list[int]]:
        widths = sorted(set(self.widths))
        drops = [
            list(range(min(n, self.max_drop if self.max_drop is not None else n) + 1)) if self.drop else [0]
            for n in self._bound()
        ]
        return [widths] * len(self._bound()) + drops

    def params(
        self, cand: Candidate, in_channels: int, num_classes: int, input_size: int | None = None
    ) -> dict[str, Any]:
        n = len(self._bound())
        out: dict[str, Any] = {
            "input_shape": self._input_shape,
            "widths": [w / 100 for w in cand[:n]],
            "drop": list(cand[n : 2 * n]),
        }
        if self.round_to:
            out["round_to"] = self.round_to
        return out

    def describe(self, cand: Candidate) -> str:
        n = len(self._bound())
        return f"widths={','.join(f'{w}%' for w in cand[:n])} drop={','.join(map(str, cand[n:]))}"


def _space_type(v: Any) -> str:
    return str((v.get("type") if isinstance(v, dict) else getattr(v, "type", None)) or "resnet")


#: what ``search.space`` accepts; ``type`` picks the space (resnet when left out)
SearchSpace = Annotated[
    Annotated[ResNetSpace, Tag("resnet")]
    | Annotated[MobileNetSpace, Tag("mobilenet")]
    | Annotated[TextShrinkSpace, Tag("text-shrink")]
    | Annotated[ShrinkSpace, Tag("shrink")],
    Discriminator(_space_type),
]
Space = ResNetSpace | MobileNetSpace | TextShrinkSpace | ShrinkSpace
