"""The plan of a compile: which passes exist, the validated model.yaml, and the checked order of its passes.

Built-in passes are named here and imported only when a config names them (so validating a config imports just
those passes); third-party passes come from the ``edgekd.passes`` entry-point group. Pass settings and
architecture names are checked through :class:`edgekd.config.load.Checks`, so every problem of a model.yaml is
reported at once, before anything runs.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgekd.compiler.baseline import Baseline
from edgekd.config import load
from edgekd.config.model import ModelConfig
from edgekd.core.artifacts import sha256_file
from edgekd.core.errors import ConfigError, PipelineError
from edgekd.models.build import arch_problem
from edgekd.pipeline.stage import Pass, registered, registered_names

#: the built-in passes, in pipeline order: name -> module that registers it
BUILTIN = {
    "search": "edgekd.stages.search.stage",
    "distill": "edgekd.stages.distill.stage",
    "prune": "edgekd.stages.prune.stage",
    "quantize": "edgekd.stages.quantize.stage",
    "lower": "edgekd.stages.lower.stage",
    "profile": "edgekd.stages.profile.stage",
    "report": "edgekd.stages.report.stage",
}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in entry_points(group="edgekd.passes"):
            ep.load()  # the module registers its passes


def get_pass(name: str) -> type[Pass] | None:
    """The pass class registered under ``name`` (importing its module on first use), or None."""
    if (cls := registered(name)) is not None:
        return cls
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    else:
        _load_plugins()
    return registered(name)


def pass_names() -> list[str]:
    _load_plugins()
    return list(dict.fromkeys([*BUILTIN, *registered_names()]))


def _pass_schema(name: str) -> type[BaseModel] | None:
    cls = get_pass(name)
    return None if cls is None else cls.Config


CHECKS = load.Checks(pass_schema=_pass_schema, pass_names=pass_names, arch_problem=arch_problem)


def load_model_config(path: str | Path, overrides: list[str] | None = None) -> ModelConfig:
    """Read, override (``KEY=VALUE`` strings, as ``edgekd compile --set``) and validate a model.yaml."""
    return load.load_model_config(path, CHECKS, overrides)


def parse_model_config(raw: Any, source: Path | None = None) -> ModelConfig:
    """Validate a ``model.yaml`` document (already read); one ConfigError lists every problem."""
    return load.parse_model_config(raw, CHECKS, source)


def check_order(passes: list[tuple[str, type[Pass]]], initial: set[str]) -> None:
    """Refuse an impossible pass list before anything runs."""
    have = set(initial)
    for i, (name, cls) in enumerate(passes):
        missing = cls.requires - have
        if missing:
            producers = sorted(n for n in pass_names() if (c := get_pass(n)) is not None and c.produces & missing)
            hint = f"put {' or '.join(producers)} before it" if producers else ""
            if "student" in missing:
                hint += (", or " if hint else "") + "give student: in model.yaml"
            hint = hint or "add a pass that produces it"
            raise PipelineError(
                f"passes[{i}].{name} needs {', '.join(sorted(missing))}, which no earlier pass produces", fix=hint
            )
        for cap, reason in cls.must_precede.items():
            if cap in have:
                raise PipelineError(
                    f"passes[{i}].{name} cannot run after the student was {cap}: {reason}",
                    fix=f"move {name} earlier in passes:",
                )
        have |= cls.produces


def plan(cfg: ModelConfig) -> list[Pass]:
    """The passes of ``cfg`` in order, the implicit baseline first and the report last; the order is checked."""
    passes: list[Pass] = [Baseline(Pass.Config())]
    named = []
    for entry in cfg.passes:
        cls = get_pass(entry.name)
        assert cls is not None  # config validation checked the names
        named.append((entry.name, cls))
        passes.append(cls(entry.config))
    if not any(n == "report" for n, _ in named):
        report = get_pass("report")
        assert report is not None
        named.append(("report", report))
        passes.append(report(report.Config()))
    initial = {"teacher", "data"} | ({"student"} if cfg.student else set())
    check_order(named, initial)
    return passes


def stage_classes(names: list[str]) -> list[type[Pass]]:
    """The pass classes of the names a result.json lists (unknown ones, e.g. an uninstalled plugin, are skipped)."""
    out = []
    for n in dict.fromkeys(names):
        cls = get_pass(n) if n != Baseline.name else Baseline
        if cls is not None:
            out.append(cls)
    return out


def imported_code(cfg: ModelConfig) -> list[dict[str, Any]]:
    """Each piece of code ``cfg`` named and edgekd imported (call after building the models and loading the data):
    its key, ``module:function``, the module's file and that file's sha256 (recorded in result.json, and part of
    the cache key, so editing a builder re-runs the compile)."""
    out = []
    for key, ref in cfg.code_references():
        module = sys.modules.get(ref.partition(":")[0])
        file = getattr(module, "__file__", None)
        out.append(
            {
                "key": key,
                "callable": ref,
                "file": file,
                "sha256": sha256_file(file) if file and Path(file).is_file() else None,
            }
        )
    return out


def refuse_code(cfg: ModelConfig) -> None:
    """ConfigError when ``cfg`` names Python code outside edgekd (``--no-code``: for services compiling configs that
    others wrote, where a builder such as ``arch: "os:system"`` would run anything)."""
    refs = [(k, ref) for k, ref in cfg.code_references() if ref.partition(":")[0].split(".")[0] != "edgekd"]
    if refs:
        label = cfg.source_file or "model config"
        problems = [f"{k}: names code to import and run ({ref!r})" for k, ref in refs]
        raise ConfigError(
            f"{label}: --no-code refuses configs that import modules outside edgekd; {len(refs)} found\n  "
            + "\n  ".join(problems),
            fix="use zoo architectures and data sources (npz, image-folder, image-list, fashion-mnist), or compile "
            "without --no-code if you trust the config's author",
            problems=problems,
        )
