"""The layout's rules, read from the code: floors, no import cycle, passes apart, backends behind their table."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PKG = REPO / "edgekd"
STAGES = ["search", "distill", "prune", "quantize", "lower", "profile", "report"]
# bottom to top; a module may import its own floor or lower ones, never a higher one
FLOORS: dict[str, int] = {
    "edgekd._version": 0,
    "edgekd.core": 0,
    "edgekd.errors": 0,
    "edgekd.config": 1,
    "edgekd.data": 2,
    "edgekd.models": 2,
    "edgekd.document": 2,
    "edgekd.pipeline": 3,
    "edgekd.backends": 4,
    "edgekd.train": 4,
    "edgekd.latency": 5,
    "edgekd.stages": 6,
    **{f"edgekd.stages.{s}": 6 + i for i, s in enumerate(STAGES)},
    "edgekd.compiler": 13,
    "edgekd.api": 14,
    "edgekd.cli": 15,
    "edgekd": 15,  # the package's face (imports the API lazily)
    "edgekd.__main__": 16,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def floor_of(module: str) -> tuple[str, int]:
    best = max((k for k in FLOORS if module == k or module.startswith(k + ".")), key=len)
    return best, FLOORS[best]


def imports_of(path: Path) -> set[str]:
    """Every edgekd module ``path`` imports, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # from edgekd.models import zoo: the submodule is what is imported
                sub = f"{node.module}.{a.name}"
                found.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (PKG.parent / sub.replace(".", "/")).is_dir() else node.module)  # fmt: skip
    return {m for m in found if m == "edgekd" or m.startswith("edgekd.")}


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: imports_of(p) - {m} for m, p in MODULES.items()}


def test_no_import_goes_up_a_floor() -> None:
    wrong = []
    for m, deps in GRAPH.items():
        _, f = floor_of(m)
        for d in deps:
            if d == "edgekd" and m != "edgekd":
                wrong.append(f"{m} imports the package face edgekd (import the module itself)")
            elif floor_of(d)[1] > f:
                wrong.append(f"{m} (floor {f}) imports {d} (floor {floor_of(d)[1]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_passes_never_import_each_other() -> None:
    wrong = []
    for m, deps in GRAPH.items():
        home, _ = floor_of(m)
        for d in deps:
            there, _ = floor_of(d)
            if home != there and home.split(".")[-1] in STAGES and there.split(".")[-1] in STAGES:
                wrong.append(f"{m} imports {d}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    """Imports inside functions count: a cycle there is still a tangle (and a lazy import hides it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"{len(cycles)} import cycle(s): " + "; ".join(", ".join(c) for c in cycles)


def test_every_module_has_a_floor() -> None:
    assert all(floor_of(m) for m in GRAPH)


BACKEND_BRANCH = re.compile(
    r"""(backend|runtime\.name|runtime)\s*==\s*["'](onnx|tflite|tensorrt|onnxruntime|litert)["']"""
)


def test_backend_differences_live_in_backends() -> None:
    """No ``if backend == "tensorrt"`` outside ``backends/``: code asks the backend table."""
    wrong = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in MODULES.values()
        if "backends" not in p.relative_to(PKG).parts[:1]
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if BACKEND_BRANCH.search(line)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", ["edgekd.config", "edgekd.config.load", "edgekd.config.target", "edgekd"])
def test_reading_a_config_loads_no_pass_and_no_torch(module: str) -> None:
    code = (
        f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', "
        "'onnxruntime') or any(m.startswith(f'edgekd.{s}') for s in "
        "['stages', 'backends', 'train', 'latency', 'compiler', 'api'])); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]", out


def test_api_verbs_are_not_shadowed_by_packages() -> None:
    """``edgekd.profile`` / ``search`` / ``report`` stay the API functions after the stages are imported (a package
    of the same name under ``edgekd/`` would replace the attribute when it is imported)."""
    code = (
        "import edgekd, edgekd.compiler.plan as p\n"
        "[p.get_pass(n) for n in p.BUILTIN]\n"
        "print(all(callable(getattr(edgekd, v)) for v in ('compile', 'search', 'profile', 'predict', 'report')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "True"
