"""The pass cache: each pass's output under ``<out>/.cache/<key>/``, verified by sha256 before reuse."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd._version import __version__
from edgekd.config.model import ModelConfig
from edgekd.config.target import TargetConfig
from edgekd.core.artifacts import atomic_write_bytes, sha256_file
from edgekd.core.errors import STORAGE_ERRNOS, storage_error
from edgekd.latency.predictor.lookup import predictor_path


def digest(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_key(
    cfg: ModelConfig,
    target: TargetConfig,
    code: Sequence[dict[str, Any]] = (),
    data_sha256: str | None = None,
    runtimes: dict[str, str | None] | None = None,
) -> str:
    """The cache key of a compile's inputs: the config (passes aside), the target, edgekd's version, the
    checkpoints' sha256, the files of the code the config imported (``code``: :func:`plan.imported_code`), the
    data's content (``DataBundle.content_sha256``), the target's latency predictor file and the versions of the
    libraries that compute the results (``runtimes``): change any of them and nothing is replayed."""
    predictor = predictor_path(target)
    inputs: dict[str, Any] = {
        "config": cfg.fingerprint(),
        "target": target.model_dump(mode="json"),
        "version": __version__,
        "code": [(c["callable"], c["sha256"]) for c in code],
        "data": data_sha256,
        "predictor": sha256_file(predictor) if predictor.is_file() else None,
        "runtimes": runtimes or {},
    }
    for spec, key in ((cfg.teacher, "teacher"), (cfg.student, "student")):
        if spec is not None and spec.checkpoint is not None:
            inputs[f"{key}_sha256"] = sha256_file(cfg.resolve(spec.checkpoint))
    return digest(inputs)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


class Cache:
    """Pass outputs under ``<root>/<key>/``: ``state.json`` (written last) plus the files it lists."""

    def __init__(self, root: Path, read: bool = True) -> None:
        self.root = root
        self.read = read

    def load(self, key: str) -> dict[str, Any] | None:
        entry = self.root / key
        state_file = entry / "state.json"
        if not self.read or not state_file.is_file():
            return None
        try:
            state = json.loads(state_file.read_text())
            for rel, sha in state["files"].items():
                if sha256_file(entry / rel) != sha:
                    raise ValueError(f"{rel} sha256 mismatch")
        except (OSError, ValueError, KeyError) as exc:
            shutil.rmtree(entry, ignore_errors=True)  # corrupted: never reuse
            return {"corrupt": str(exc)}
        state["dir"] = entry
        return state

    def store(self, key: str, state: dict[str, Any], files: dict[str, Path | bytes]) -> None:
        """Write ``files`` (name -> source path or bytes) and state.json last into a temp dir, renamed into place.

        Safe under concurrent compiles: the same key means the same inputs, so when another process
        stored it first, its complete entry is kept and ours is dropped.
        """
        entry = self.root / key
        tmp = self.root / f".{key}.tmp-{os.getpid()}-{time.time_ns()}"
        try:
            tmp.mkdir(parents=True)
            shas = {}
            for rel, src in files.items():
                if isinstance(src, bytes):
                    (tmp / rel).write_bytes(src)
                else:
                    shutil.copyfile(src, tmp / rel)
                shas[rel] = sha256_file(tmp / rel)
            write_json(tmp / "state.json", {**state, "files": shas})
            if entry.exists() and not (entry / "state.json").is_file():
                shutil.rmtree(entry, ignore_errors=True)  # debris of a foreign or manual edit
            try:
                tmp.rename(entry)
            except OSError:
                if not (entry / "state.json").is_file():
                    raise
        except OSError as exc:
            if exc.errno in STORAGE_ERRNOS:
                raise storage_error(exc, exc.filename or entry) from exc
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
