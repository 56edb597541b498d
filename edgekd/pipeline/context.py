"""What flows through the passes: the run's :class:`Context` and the :class:`Artifact` files passes produce."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgekd.config.model import ModelConfig, ModelSpec
from edgekd.config.target import TargetConfig
from edgekd.core.artifacts import atomic_writer, sha256_file
from edgekd.core.progress import EventLog, TaskProgress, console
from edgekd.data.dataset import DataBundle

#: the files of a Hugging Face tokenizer (copied beside a text model's artifacts)
TOKENIZER_PREFIXES = ("tokenizer", "special_tokens", "vocab", "merges", "spiece", "added_tokens", "sentencepiece")


@dataclass
class Artifact:
    """A file a pass produced: where it is in the run folder, its hash, and what is known about it."""

    name: str
    path: str  # relative to the run folder
    sha256: str
    bytes: int
    kind: str  # onnx, tflite, engine, text, ...
    precision: str = "fp32"
    backend: str = "onnx"
    producer: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # parity, accuracy, latency, ...

    def record(self) -> dict[str, Any]:
        """Every field as plain data (the cache stores it; ``Artifact(**record)`` restores it)."""
        return dict(self.__dict__)


@dataclass
class Context:
    """What flows through the passes."""

    config: ModelConfig
    target: TargetConfig
    run_dir: Path
    data: DataBundle
    teacher: nn.Module
    student: nn.Module | None
    student_spec: ModelSpec | None
    events: EventLog
    quiet: bool = False
    train_device: str = "cpu"  # resolved from model.yaml device: where training and teacher inference run
    amp: str | None = None  # bf16 | fp16 autocast while training (model.yaml amp)
    capabilities: set[str] = field(default_factory=set)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    current_pass: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)  # one per pass run so far (status, key, seconds)
    plan: list[Any] = field(default_factory=list)  # the Pass objects of this compile, in order
    stages_run: list[Any] = field(default_factory=list)  # those run (or restored) so far: result.json and report

    def progress(self, label: str | None = None) -> TaskProgress:
        return TaskProgress(label or self.current_pass, self.events, self.quiet)

    def note(self, text: str) -> None:
        """Something the report must say plainly (a figure not measured, a fallback taken)."""
        if text not in self.notes:
            self.notes.append(text)
            self.events.emit("note", text=text)
            if not self.quiet:
                console.print(f"  [yellow]note:[/] {text}")

    @contextlib.contextmanager
    def artifact(self, name: str, filename: str, kind: str, **meta: Any) -> Iterator[Path]:
        """Write an artifact atomically: the block writes the yielded temp path; on success it is renamed,
        hashed and registered under ``name``."""
        final = self.run_dir / filename
        with atomic_writer(final) as tmp:
            yield tmp
            if tmp.is_file():
                with open(tmp, "rb") as f:  # on disk before the rename makes it final
                    os.fsync(f.fileno())
        self.add_artifact(name, final, kind, **meta)

    def add_artifact(self, name: str, path: Path, kind: str, **meta: Any) -> Artifact:
        art = Artifact(
            name=name,
            path=str(path.relative_to(self.run_dir)),
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            kind=kind,
            producer=self.current_pass,
            **meta,
        )
        self.artifacts[name] = art
        self.events.emit("artifact", name=name, path=art.path, sha256=art.sha256, bytes=art.bytes)
        return art

    def path_of(self, name: str) -> Path:
        return self.run_dir / self.artifacts[name].path

    def add_preprocessing_sidecar(self, name: str) -> Artifact | None:
        """``<file>.preprocessing.json`` next to model artifact ``name`` (a .tflite file, an engine: formats with
        no place for it inside): the input the model was compiled for, and the file it belongs to (sha256)."""
        if not self.data.preprocessing:
            return None
        model = self.artifacts[name]
        info = {**self.data.preprocessing, "model": Path(model.path).name, "model_sha256": model.sha256}
        filename = Path(model.path).name + ".preprocessing.json"
        with self.artifact(f"{name}_preprocessing", filename, "json", precision="-", backend=model.backend) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        return self.artifacts[f"{name}_preprocessing"]

    def add_tokenizer(self) -> list[Artifact]:
        """The text teacher's tokenizer files in ``tokenizer/`` beside the artifacts, with the class names
        (``tokenizer/labels.json``): what an application needs to turn text into a model's inputs and back."""
        source = self.data.tokenizer_dir
        if source is None or not self.data.is_text:
            return []
        out = []
        for f in sorted(source.iterdir()):
            if f.is_file() and f.name.startswith(TOKENIZER_PREFIXES):
                with self.artifact(f"tokenizer/{f.name}", f"tokenizer/{f.name}", "tokenizer", precision="-",
                                   backend="-") as tmp:  # fmt: skip
                    tmp.write_bytes(f.read_bytes())
                out.append(self.artifacts[f"tokenizer/{f.name}"])
        labels = {"classes": self.data.preprocessing.get("classes", []), **self.data.preprocessing}
        with self.artifact("tokenizer/labels.json", "tokenizer/labels.json", "json", precision="-", backend="-") as tmp:
            tmp.write_text(json.dumps(labels, indent=2) + "\n")
        out.append(self.artifacts["tokenizer/labels.json"])
        return out
