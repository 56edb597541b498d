"""The schema of ``targets/*.yaml`` (backends, precisions, runtime, device access, profiling counts), the
``--device user@host[:port]`` override, and target lookup: ``--target`` takes a name, an alias or a path.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edgekd.config.load import read_yaml
from edgekd.core.errors import ConfigError, TargetError
from edgekd.core.schema import Strict, did_you_mean, validation_problems

Backend = Literal["onnx", "tensorrt", "tflite"]
Precision = Literal["fp32", "fp16", "int8"]


#: runtimes whose targets, when their device is local, are this machine itself (x86 ONNX Runtime targets)
# runtimes the runner can time on this machine -> whether a local target of that runtime is this host only when its
# cpu_arch is this machine's (a LiteRT target described without its SSH device is usually a board, not this host)
HOST_RUNTIMES = {"onnxruntime": False, "litert": True}
PredictorKey = Literal["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]


class RuntimeSpec(Strict):
    name: Literal["onnxruntime", "tensorrt", "litert"] = "onnxruntime"
    threads: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class TargetQuant(Strict):
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8"] = "int8"
    per_channel: bool = True
    # false for TensorRT: its explicit quantization reads int8 QDQ only; biases stay float and it fuses them
    quantize_bias: bool = True


# A host is a DNS name, an IPv4 address or an IPv6 address (optionally in brackets); a user is a POSIX login name.
# Both go on ssh's command line, so anything else (spaces, ';', '$(', a leading '-' that ssh would read as an
# option) is refused here rather than escaped.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[?[0-9A-Fa-f:.%]{2,64}\]?)$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_NO_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class DeviceSpec(Strict):
    """How to reach the target device. ``kind: ssh`` measures latency there (see README "Profiling on a device")."""

    kind: Literal["local", "ssh"] = "local"
    host: str | None = Field(default=None, description="DNS name or IP address of the device")
    user: str | None = Field(default=None, description="login name (default: ssh's, i.e. your user or ~/.ssh/config)")
    port: int = Field(default=22, ge=1, le=65535)
    python: str = Field(default="python3", description="Python on the device that has the runtime installed")
    workdir: str = Field(default="/tmp/edgekd", description="folder on the device for the model and the runner")
    identity_file: Path | None = Field(default=None, description="private key (ssh -i); default: ssh's own keys")
    known_hosts: Path | None = Field(default=None, description="known_hosts file; default: ~/.ssh/known_hosts")
    strict_host_key_checking: bool = Field(
        default=True,
        description="refuse hosts whose key is not in known_hosts; false accepts a NEW host's key on first use "
        "(a changed key is always refused)",
    )
    required: bool = Field(
        default=False, description="fail the compile when the device cannot be used (default: measure on the host)"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="connect timeout per attempt, seconds")
    retries: int = Field(default=2, ge=0, le=10, description="extra connection attempts, with backoff")
    run_timeout_s: float = Field(default=1800.0, gt=0, description="limit for one measurement on the device")

    @field_validator("host")
    @classmethod
    def _safe_host(cls, v: str | None) -> str | None:
        if v is not None and not _HOST_RE.match(v):
            raise ValueError(
                f"host {v!r} is not a host name or IP address (letters, digits, '.', '-', '_', or an IPv6 address)"
            )
        return v

    @field_validator("user")
    @classmethod
    def _safe_user(cls, v: str | None) -> str | None:
        if v is not None and not _USER_RE.match(v):
            raise ValueError(f"user {v!r} is not a login name (letters, digits, '.', '-', '_'; not starting with '-')")
        return v

    @field_validator("python", "workdir")
    @classmethod
    def _no_control(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        if _NO_CONTROL_RE.search(v):
            raise ValueError(f"{v!r} contains a control character (newline, tab, NUL)")
        if v.startswith("-"):
            raise ValueError(f"{v!r} starts with '-' (it would be read as an option); use ./{v} or a full path")
        return v

    @model_validator(mode="after")
    def _ssh_host(self) -> DeviceSpec:
        if self.kind == "ssh" and not self.host:
            raise ValueError("kind 'ssh' needs host:")
        return self

    @property
    def address(self) -> str:
        """``user@host:port`` as a user would write it (for messages)."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}" + (f":{self.port}" if self.port != 22 else "")


def parse_device(text: str) -> dict[str, Any]:
    """``user@host[:port]`` (``[v6addr]:port`` for IPv6) -> {user, host, port} for ``--device``; ConfigError if bad."""
    m = re.match(r"^(?:([^@]*)@)?(\[[^\]]*\]|[^:]*)(?::([0-9]{1,5}))?$", text.strip())
    if not m or not m.group(2):
        raise ConfigError(
            f"--device {text!r}: expected user@host or user@host:port", fix="e.g. --device pi@raspberrypi.local:22"
        )
    out: dict[str, Any] = {"host": m.group(2).strip("[]")}
    if m.group(1) is not None:
        out["user"] = m.group(1)
    if m.group(3) is not None:
        out["port"] = int(m.group(3))
    return out


class ProfileSpec(Strict):
    warmup: int = Field(default=20, ge=0)
    runs: int = Field(default=100, ge=1)
    rounds: int = Field(default=5, ge=1)
    batch: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class Timing:
    """How one latency measurement is taken: warm-up and timed runs per model, interleaved rounds, runtime threads
    (None: the runtime's default), batch, and how many of the slowest layers to report (0: none)."""

    warmup: int
    runs: int
    rounds: int
    threads: int | None
    batch: int = 1
    per_layer: int = 0
    seq_len: int | None = None  # text models: tokens per sample fed to a dynamic sequence length


class TargetConfig(Strict):
    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    cpu_arch: str = "x86_64"
    backends: list[Backend] = Field(min_length=1)
    precisions: list[Precision] = Field(min_length=1)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    quantization: TargetQuant = Field(default_factory=TargetQuant)
    device: DeviceSpec = Field(default_factory=DeviceSpec)
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    predictor: str | dict[PredictorKey, str] | None = Field(
        default=None,
        description="latency predictor file (JSON, relative to this target file), or a mapping from kind "
        "(onnx-fp32, onnx-int8, tflite-fp32, tflite-int8) to file; default: <target>.predictor.json (fp32 ONNX) and "
        "<target>.<kind>.predictor.json beside it. Build one with: edgekd profile --build-predictor --target <name> "
        "[--precision int8]",
    )
    latency: Literal["measure", "predictor"] = Field(
        default="measure",
        description="measure: search candidates are measured (on this host when the target is the host); "
        "predictor: always predict them from the predictor file",
    )

    source_file: Path | None = Field(default=None, exclude=True)

    def timing(
        self,
        warmup: int | None = None,
        runs: int | None = None,
        rounds: int | None = None,
        threads: int | None = None,
        per_layer: int = 0,
    ) -> Timing:
        """The target's ``profile:`` counts and ``runtime.threads``, each overridden where given."""
        p = self.profile
        return Timing(
            warmup=p.warmup if warmup is None else warmup,
            runs=runs or p.runs,
            rounds=rounds or p.rounds,
            threads=threads or self.runtime.threads,
            batch=p.batch,
            per_layer=per_layer,
        )

    @property
    def is_host(self) -> bool:
        """True when this target is the machine edgekd runs on: a local device running ONNX Runtime, or LiteRT on
        this machine's CPU architecture (a LiteRT board described without its SSH device is not this host)."""
        if self.device.kind != "local" or self.runtime.name not in HOST_RUNTIMES:
            return False
        return not HOST_RUNTIMES[self.runtime.name] or self.cpu_arch == platform.machine()


def parse_target(raw: Any, source: Path | None = None) -> TargetConfig:
    label = str(source) if source else "target"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: a target file must be a mapping (name:, backends:, precisions:, ...)",
            fix=f"copy {BUNDLED_TARGETS / 'x86-cpu.yaml'} and edit it",
        )
    try:
        target = TargetConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, TargetConfig)
        raise ConfigError(
            f"{label}: {len(problems)} problem(s)\n  " + "\n  ".join(problems),
            fix=f"compare with {BUNDLED_TARGETS / 'x86-cpu.yaml'}",
            problems=problems,
        ) from None
    target.source_file = source
    dev = target.device
    for key in ("identity_file", "known_hosts"):  # relative to the target file, like model.yaml's paths
        value = getattr(dev, key)
        if value is not None:
            value = value.expanduser()
            if not value.is_absolute() and source is not None:
                value = source.resolve().parent / value
            setattr(dev, key, value)
    return target


def with_device(target: TargetConfig, device: str | dict[str, Any]) -> TargetConfig:
    """A copy of ``target`` whose device is reached over SSH at ``device`` (``user@host[:port]`` or a dict).

    The target's other device settings (key, known_hosts, python, workdir, timeouts) are kept.
    """
    update = parse_device(device) if isinstance(device, str) else dict(device)
    raw = {**target.device.model_dump(), "kind": "ssh", **update}
    try:
        dev = DeviceSpec.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, DeviceSpec, "--device")
        raise ConfigError(
            f"--device {device!r}: " + "; ".join(problems), fix="give user@host[:port], e.g. pi@192.168.1.20:22"
        ) from None
    out = target.model_copy(update={"device": dev})
    out.source_file = target.source_file
    return out


#: the target profiles shipped with edgekd (package data, so an installed wheel has them too)
BUNDLED_TARGETS = Path(__file__).resolve().parents[1] / "bundled" / "targets"


def search_dirs() -> list[Path]:
    """``$EDGEKD_TARGETS`` (os.pathsep-separated), ``./targets``, then the targets shipped with edgekd."""
    dirs = [Path(p) for p in os.environ.get("EDGEKD_TARGETS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", BUNDLED_TARGETS]
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
        f"unknown target {text!r}{did_you_mean(text, names)}",
        fix=f"use one of: {', '.join(t.name for t in targets)} (see `edgekd targets`), or a path to a target YAML",
    )
