"""Read a YAML file safely, apply ``--set KEY=VALUE`` overrides, and validate a whole ``model.yaml`` at once.

Pass settings are checked by a ``PassValidator`` the caller gives (the compiler's plan), so that every problem of
the file, top-level or inside a pass, is reported in one ConfigError, while this floor imports no pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.config.model import ModelConfig, PassEntry
from edgekd.core.errors import ConfigError
from edgekd.core.schema import did_you_mean, validation_problems


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file (no object construction); syntax errors carry line and column."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found", fix="check the path; `edgekd init` writes a starter model.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})", fix="save the file as UTF-8 text") from exc
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            f"{path}: YAML syntax error at {where}: {exc.problem}",
            fix="fix the indentation or quoting there (YAML uses spaces, not tabs)",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})", fix="fix the YAML syntax") from exc


@dataclass(frozen=True)
class Checks:
    """What only higher floors know, given by the caller (the compiler's plan): the settings schema of a pass by
    name (None: no such pass), every pass name, and the problem with an architecture name (None: it can be built)."""

    pass_schema: Callable[[str], type[BaseModel] | None]
    pass_names: Callable[[], list[str]]
    arch_problem: Callable[[str], str | None]


def _parse_passes(raw: Any, problems: list[str], checks: Checks) -> list[PassEntry]:
    if not isinstance(raw, list) or not raw:
        problems.append("passes: must be a non-empty list, e.g. [- distill: {epochs: 5}, - lower: {}]")
        return []
    entries = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"passes[{i}]: each pass is one key, its name, with its settings below (got {item!r})")
            continue
        ((name, settings),) = item.items()
        schema = checks.pass_schema(str(name))
        if schema is None:
            names = checks.pass_names()
            problems.append(
                f"passes[{i}]: unknown pass {name!r}{did_you_mean(str(name), names)}; known: {', '.join(names)}"
            )
            continue
        try:
            entries.append(PassEntry(name=str(name), config=schema.model_validate(settings or {})))
        except ValidationError as exc:
            problems.extend(validation_problems(exc, schema, f"passes[{i}].{name}"))
    return entries


def parse_model_config(raw: Any, checks: Checks, source: Path | None = None) -> ModelConfig:
    """Validate a ``model.yaml`` document; every problem is collected before raising one ConfigError."""
    label = str(source) if source else "model config"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of keys (teacher:, data:, passes:, ...)",
            fix="start from `edgekd init`",
        )
    problems: list[str] = []
    passes = _parse_passes(raw.get("passes"), problems, checks) if "passes" in raw else []
    if "passes" not in raw:
        problems.append("passes: required key is missing")
    rest = {k: v for k, v in raw.items() if k != "passes"}
    cfg: ModelConfig | None = None
    try:
        cfg = ModelConfig.model_validate({**rest, "passes": []})
    except ValidationError as exc:
        problems = validation_problems(exc, ModelConfig) + problems
    if cfg is not None:
        specs = ((cfg.teacher, "teacher"), (cfg.student, "student"))
        arch = [f"{key}.arch: {p}" for spec, key in specs if spec is not None and (p := checks.arch_problem(spec.arch))]
        if cfg.constraints.max_accuracy_drop is not None and cfg.data.val_fraction == 0:
            arch.append(
                "constraints.max_accuracy_drop: the accuracy guard compares on the validation split, but "
                "data.val_fraction is 0 (there is none); set data.val_fraction (e.g. 0.1) or remove the constraint"
            )
        problems = arch + problems
    if problems:
        raise ConfigError(
            f"{label}: {len(problems)} problem(s)\n  " + "\n  ".join(problems),
            fix="correct the keys above; `edgekd init` writes a commented example",
            problems=problems,
        )
    assert cfg is not None
    cfg.passes = passes
    if source is not None:
        cfg.base_dir = source.resolve().parent
        cfg.source_file = source.resolve()
    for spec, key in ((cfg.teacher, "teacher"), (cfg.student, "student")):
        if spec is not None and spec.checkpoint is not None and not cfg.resolve(spec.checkpoint).is_file():
            problems.append(f"{key}.checkpoint: file not found: {cfg.resolve(spec.checkpoint)}")
    if cfg.data.path is not None and not cfg.resolve(cfg.data.path).exists():
        problems.append(f"data.path: not found: {cfg.resolve(cfg.data.path)}")
    if problems:
        raise ConfigError(
            f"{label}: {len(problems)} problem(s)\n  " + "\n  ".join(problems),
            fix="fix the paths (relative paths are read from the folder of model.yaml)",
            problems=problems,
        )
    return cfg


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(raw: Any, assignment: str) -> Any:
    """Set one value in a raw config document: ``passes[0].distill.epochs=10`` (the value is read as YAML)."""
    path, sep, text = assignment.partition("=")
    tokens = [(m.group(1), m.group(2)) for m in _TOKEN.finditer(path.strip())]
    if not sep or not tokens or "".join(f".{k}" if k else f"[{i}]" for k, i in tokens).lstrip(".") != path.strip():
        raise ConfigError(
            f"--set {assignment!r}: expected KEY=VALUE, e.g. passes[0].distill.epochs=10",
            fix="write the YAML path of the key, '=', then the value",
        )
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({exc})", fix="quote the value") from exc
    node = raw
    where = path.strip()
    for depth, (key, index) in enumerate(tokens):
        last = depth == len(tokens) - 1
        if index is not None:
            i = int(index)
            if not isinstance(node, list) or i >= len(node):
                raise ConfigError(f"--set {where}: no list item [{i}] there", fix="check the index in model.yaml")
            if last:
                node[i] = value
            else:
                node = node[i]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {where}: {key!r} is not inside a mapping", fix="check the YAML path")
            if last:
                node[key] = value
            else:
                if not isinstance(node.get(key), dict | list):
                    node[key] = {}
                node = node[key]
    return raw


def load_model_config(path: str | Path, checks: Checks, overrides: list[str] | None = None) -> ModelConfig:
    """Read, override (``KEY=VALUE`` strings, as ``edgekd compile --set``) and validate a model.yaml."""
    path = Path(path)
    raw = read_yaml(path)
    for assignment in overrides or []:
        raw = apply_override(raw, assignment)
    return parse_model_config(raw, checks, path)
