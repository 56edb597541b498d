"""Find device profiles: ``--target`` takes a name, an alias or a path to a YAML file."""

from __future__ import annotations

import os
from pathlib import Path

from edgekd.config import TargetConfig, _did_you_mean, parse_target, read_yaml
from edgekd.errors import TargetError

REPO_TARGETS = Path(__file__).resolve().parent.parent / "targets"


def search_dirs() -> list[Path]:
    """``$EDGEKD_TARGETS`` (os.pathsep-separated), ``./targets``, then the targets shipped with edgekd."""
    dirs = [Path(p) for p in os.environ.get("EDGEKD_TARGETS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", REPO_TARGETS]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def list_targets() -> list[TargetConfig]:
    """Every target profile found, first occurrence of a name wins."""
    found: dict[str, TargetConfig] = {}
    for d in search_dirs():
        for f in sorted(d.glob("*.yaml")):
            t = parse_target(read_yaml(f), f)
            found.setdefault(t.name, t)
    return list(found.values())


def load_target(name_or_path: str | Path) -> TargetConfig:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise TargetError(
                f"target file not found: {path}", fix="give an existing YAML file or a name from `edgekd targets`"
            )
        return parse_target(read_yaml(path), path)
    targets = list_targets()
    for t in targets:
        if text == t.name or text in t.aliases:
            return t
    names = [t.name for t in targets] + [a for t in targets for a in t.aliases]
    raise TargetError(
        f"unknown target {text!r}{_did_you_mean(text, names)}",
        fix=f"use one of: {', '.join(t.name for t in targets)} (see `edgekd targets`), or a path to a target YAML",
    )
