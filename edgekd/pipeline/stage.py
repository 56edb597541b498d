"""A pass: a name, a typed ``Config``, the capabilities it ``requires`` and ``produces``, and ``run(ctx)``.

Passes register themselves with :func:`register_pass` into a plain table; this module imports no pass (the
compiler's plan imports the built-in ones by name, on demand, and third-party ones through the ``edgekd.passes``
entry-point group). A pass returns what it produced (:class:`Produced`) and raises on failure (an
:class:`~edgekd.core.errors.AccuracyGuardError` when the guard cannot hold); the manager caches, records and writes
the failure files. Each pass contributes its own sections to the report (:meth:`Pass.report_sections`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel
from torch import nn

from edgekd.config.target import TargetConfig
from edgekd.core.schema import Strict

if TYPE_CHECKING:
    from edgekd.document.model import Section
    from edgekd.pipeline.context import Context


@dataclass(frozen=True)
class Produced:
    """What a pass tells the manager beyond what it put on the context: ``cacheable`` False when this run's output
    must not be replayed (e.g. host figures taken because the device could not be reached)."""

    cacheable: bool = True


class Pass:
    """Base class of every pass. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = Strict
    requires: ClassVar[frozenset[str]] = frozenset()
    produces: ClassVar[frozenset[str]] = frozenset()
    #: capability -> reason: this pass is refused once that capability exists
    must_precede: ClassVar[dict[str, str]] = {}
    #: False for passes whose output depends on the run itself (the report)
    cacheable: ClassVar[bool] = True
    #: True when the pass changes the PyTorch student (its weights are cached)
    changes_student: ClassVar[bool] = False

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        """Checks that need the built models (e.g. layer names), run before anything is written.
        ``where`` is the pass's YAML path (``passes[0].distill``); raise a ConfigError naming it."""

    def check_target(self, where: str, target: TargetConfig) -> None:
        """Checks that need the target (e.g. its backend's converter is installed), run before anything is written;
        raise an EdgekdError naming ``where`` or the package to install."""

    #: where this pass's metrics (``ctx.metrics[name]``) go in result.json, as a key path
    result_key: ClassVar[tuple[str, ...]] = ()
    #: overview: the report shows this pass's sections after the pass-by-pass table; details: after the artifacts
    report_position: ClassVar[Literal["overview", "details"]] = "details"

    def run(self, ctx: Context) -> Produced | None:
        raise NotImplementedError

    def result_entry(self, ctx: Context) -> Any:
        """This pass's part of result.json (at ``result_key``): by default its metrics."""
        return ctx.metrics.get(self.name)

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        """This pass's sections of report.md/html, built from result.json alone (so any run re-renders)."""
        return []


_PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make ``cls`` available under ``cls.name`` in ``passes:`` lists."""
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise ValueError(f"a pass named {cls.name!r} is already registered ({_PASSES[cls.name].__module__})")
    _PASSES[cls.name] = cls
    return cls


def registered(name: str) -> type[Pass] | None:
    """The pass registered under ``name`` so far (None: not imported yet, or no such pass)."""
    return _PASSES.get(name)


def registered_names() -> list[str]:
    return list(_PASSES)
