"""Pass registry: a pass class registers itself by name; configs and the pipeline look it up.

Third-party passes register through the ``edgekd.passes`` entry-point group.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.pipeline import Pass

_PASSES: dict[str, type[Pass]] = {}
_loaded = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make ``cls`` available under ``cls.name`` in ``passes:`` lists."""
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise ValueError(f"a pass named {cls.name!r} is already registered ({_PASSES[cls.name].__module__})")
    _PASSES[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import edgekd.passes  # noqa: F401  (built-in passes register on import)

    for ep in entry_points(group="edgekd.passes"):
        ep.load()


def get_pass(name: str) -> type[Pass] | None:
    _load()
    return _PASSES.get(name)


def pass_names() -> list[str]:
    _load()
    return list(_PASSES)
