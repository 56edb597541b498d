"""Schemas of ``model.yaml`` and ``targets/*.yaml``, and loaders that validate a whole file at once.

Every problem is reported with its YAML path and a fix, e.g.
``passes[1].quantize.precision: 'int4' is not one of int8, fp16, fp32``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekd.errors import ConfigError


class Strict(BaseModel):
    """Base of every config block: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- model.yaml


class ModelSpec(Strict):
    """An architecture from the zoo (``arch`` + ``params``), optionally with trained weights."""

    arch: str = Field(description="zoo architecture name (e.g. resnet) or 'package.module:function'")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the builder")
    checkpoint: Path | None = Field(default=None, description="state_dict file, relative to model.yaml")
    shapes: dict[str, list[int]] | None = Field(
        default=None,
        description="sizes of pruned layers ({module path: [in, out, groups] | [features] | [in, out]}), "
        "as written by the prune pass into student.pruned.json",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from edgekd import zoo

        if ":" in v:  # your own builder, "package.module:function", imported when the model is built
            module, _, func = v.partition(":")
            if not module or not func.isidentifier():
                raise ValueError(f"arch {v!r} must look like 'package.module:function'")
            return v
        if v not in zoo.names():
            raise ValueError(
                f"unknown architecture {v!r}{_did_you_mean(v, zoo.names())}; known: {', '.join(zoo.names())}, "
                "or 'package.module:function' for your own builder"
            )
        return v


class Normalize(Strict):
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> Normalize:
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have one value per channel each")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be > 0")
        return self


DataSource = Literal["fashion-mnist", "npz", "image-folder", "callable"]


class DataConfig(Strict):
    """Where the training/test images come from and how they are normalised."""

    source: DataSource = "fashion-mnist"
    path: Path | None = Field(default=None, description="folder or file of the source, relative to model.yaml")
    callable: str | None = Field(default=None, description="'module:function' returning the arrays (source: callable)")
    subset: bool = Field(
        default=False, description="fashion-mnist: use the bundled subset even when the full set exists"
    )
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = Field(default=10, ge=2)
    normalize: Normalize | None = None
    val_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    train_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)
    labels: Literal["given", "teacher"] = Field(
        default="given", description="teacher: the data is unlabelled; training uses the teacher's predictions"
    )
    fraction: float = Field(default=1.0, gt=0, le=1, description="random share of the training split used to train")

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "callable" and not self.callable:
            raise ValueError("source 'callable' needs callable: 'package.module:function'")
        if self.callable and ":" not in self.callable:
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        if self.source in ("npz", "image-folder") and self.path is None:
            raise ValueError(f"source {self.source!r} needs path: (the {'file' if self.source == 'npz' else 'folder'})")
        return self


class CalibrationConfig(Strict):
    """Samples used to calibrate INT8 ranges (the training split by default; never the test split)."""

    source: Literal["train", "val", "npz"] = Field(
        default="train", description="train/val split, or npz: your own images (array 'x') at path"
    )
    path: Path | None = Field(default=None, description="source npz: the .npz file, relative to model.yaml")
    samples: int = Field(default=256, ge=1)
    method: Literal["minmax", "entropy", "percentile"] = "minmax"

    @model_validator(mode="after")
    def _npz_needs_path(self) -> CalibrationConfig:
        if self.source == "npz" and self.path is None:
            raise ValueError("source 'npz' needs path: (a .npz file with an array 'x' of images)")
        return self


class Constraints(Strict):
    max_accuracy_drop: float | None = Field(default=None, ge=0, description="points below the teacher")
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_size_mb: float | None = Field(default=None, gt=0)


class PassEntry(BaseModel):
    """One item of ``passes:``: its registered name and its validated config."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    config: Any


class ModelConfig(Strict):
    name: str = "model"
    teacher: ModelSpec
    student: ModelSpec | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    passes: list[PassEntry]
    constraints: Constraints = Field(default_factory=Constraints)
    seed: int = 0

    #: folder of the YAML file; relative paths are resolved against it
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_file: Path | None = Field(default=None, exclude=True)

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    def fingerprint(self) -> dict[str, Any]:
        """Everything but the passes, as plain data (the pipeline hashes it for the cache)."""
        d = self.model_dump(mode="json", exclude={"passes", "base_dir", "source_file"})
        return d


# --------------------------------------------------------------------------- targets/*.yaml

Backend = Literal["onnx", "tensorrt", "tflite"]
Precision = Literal["fp32", "fp16", "int8"]


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
    predictor: str | None = Field(
        default=None,
        description="latency predictor file (JSON, relative to this target file); default: <target>.predictor.json "
        "beside it. Build it with: edgekd profile --build-predictor --target <name>",
    )
    latency: Literal["measure", "predictor"] = Field(
        default="measure",
        description="measure: search candidates are measured (on this host when the target is the host); "
        "predictor: always predict them from the predictor file",
    )

    source_file: Path | None = Field(default=None, exclude=True)

    @property
    def is_host(self) -> bool:
        """True when this target is the machine edgekd runs on (local device running ONNX Runtime)."""
        return self.device.kind == "local" and self.runtime.name == "onnxruntime"


# --------------------------------------------------------------------------- loading and error messages


def _did_you_mean(word: str, choices: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loc(loc: tuple[str | int, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "function-before"):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Names of the fields valid at ``loc`` (for 'did you mean')."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            continue
        field = cur.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                cur = cand
                break
            for inner in getattr(cand, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    cur = inner
                    break
        else:
            cur = None
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return [n for n, f in cur.model_fields.items() if not f.exclude]
    return []


def _describe(err: dict[str, Any], schema: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = _fields_at(schema, loc[:-1])
        hint = _did_you_mean(key, valid) if valid else ""
        return f"unknown key {key!r}{hint}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = expected.replace("'", "").replace(" or ", ", ")
        return f"{value!r} is not one of {options}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{value!r} is out of range: {err['msg'].lower()}"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return f"{err['msg'].lower()} (got {value!r})" if value is not None else err["msg"].lower()


_SPACE_TAGS = ("resnet", "mobilenet")  # the values of search.space.type (edgekd.nas.space.SearchSpace)


def validation_problems(exc: ValidationError, schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Turn a pydantic error into 'yaml.path: message' lines."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        # pydantic adds the branch name of a tagged union (search.space: resnet | mobilenet) to the
        # path; the YAML has no such key, so the printed path leaves it out
        shown = tuple(p for i, p in enumerate(loc) if not (i and loc[i - 1] == "space" and p in _SPACE_TAGS))
        problems.append(f"{_loc(shown, prefix)}: {_describe(err, schema, loc)}")
    return problems


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


def _parse_passes(raw: Any, problems: list[str]) -> list[PassEntry]:
    from edgekd.registry import get_pass, pass_names

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
        cls = get_pass(str(name))
        if cls is None:
            names = pass_names()
            problems.append(
                f"passes[{i}]: unknown pass {name!r}{_did_you_mean(str(name), names)}; known: {', '.join(names)}"
            )
            continue
        try:
            entries.append(PassEntry(name=str(name), config=cls.Config.model_validate(settings or {})))
        except ValidationError as exc:
            problems.extend(validation_problems(exc, cls.Config, f"passes[{i}].{name}"))
    return entries


def parse_model_config(raw: Any, source: Path | None = None) -> ModelConfig:
    """Validate a ``model.yaml`` document; every problem is collected before raising one ConfigError."""
    label = str(source) if source else "model config"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of keys (teacher:, data:, passes:, ...)",
            fix="start from `edgekd init`",
        )
    problems: list[str] = []
    passes = _parse_passes(raw.get("passes"), problems) if "passes" in raw else []
    if "passes" not in raw:
        problems.append("passes: required key is missing")
    rest = {k: v for k, v in raw.items() if k != "passes"}
    cfg: ModelConfig | None = None
    try:
        cfg = ModelConfig.model_validate({**rest, "passes": []})
    except ValidationError as exc:
        problems = validation_problems(exc, ModelConfig) + problems
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


def load_model_config(path: str | Path, overrides: list[str] | None = None) -> ModelConfig:
    """Read, override (``KEY=VALUE`` strings, as ``edgekd compile --set``) and validate a model.yaml."""
    path = Path(path)
    raw = read_yaml(path)
    for assignment in overrides or []:
        raw = apply_override(raw, assignment)
    return parse_model_config(raw, path)


def parse_target(raw: Any, source: Path | None = None) -> TargetConfig:
    label = str(source) if source else "target"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: a target file must be a mapping (name:, backends:, precisions:, ...)",
            fix="copy targets/x86-cpu.yaml and edit it",
        )
    try:
        target = TargetConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, TargetConfig)
        raise ConfigError(
            f"{label}: {len(problems)} problem(s)\n  " + "\n  ".join(problems),
            fix="compare with targets/x86-cpu.yaml",
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
