"""The schema of ``model.yaml``: teacher, student, data, calibration, constraints and the list of passes.

The settings of each pass are validated against that pass's own ``Config`` by the compiler
(:mod:`edgekd.compiler.plan`); this module knows no pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgekd.core.device_spec import PATTERN as DEVICE_PATTERN
from edgekd.core.schema import Strict


class Taps(Strict):
    """Modules that hold a classifier's parts, when forward hooks should not guess them (edgekd.models.taps)."""

    features: str | None = Field(default=None, description="module whose output is the map before pooling")
    classifier: str | None = Field(default=None, description="the nn.Linear that gives the logits")


class ModelSpec(Strict):
    """An architecture from the zoo (``arch`` + ``params``), optionally with trained weights."""

    arch: str = Field(
        description="zoo architecture name (e.g. resnet), 'package.module:function', 'torchvision:<name>', "
        "'timm:<name>', hf (a Hugging Face folder at path; for a student: the teacher's config changed by params) or "
        "shrink (a student made of the teacher's own layers)"
    )
    path: Path | None = Field(
        default=None,
        description="arch hf: the local Hugging Face folder (config, weights, tokenizer), relative to model.yaml",
    )
    task: Literal["sequence-classification"] = Field(
        default="sequence-classification", description="arch hf: what the model does"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the builder")
    checkpoint: Path | None = Field(default=None, description="state_dict file, relative to model.yaml")
    shapes: dict[str, list[int]] | None = Field(
        default=None,
        description="sizes of pruned layers ({module path: [in, out, groups] | [features] | [in, out]}), "
        "as written by the prune pass into student.pruned.json",
    )
    output: int | str | None = Field(
        default=None,
        description="when forward returns a tuple/list (an index) or a dict/ModelOutput (a key): the logits in it",
    )
    taps: Taps | None = Field(default=None, description="name the feature map and classifier modules")

    @field_validator("arch")
    @classmethod
    def _builder_form(cls, v: str) -> str:
        """The form of a builder name; whether a zoo name exists is checked by the compiler (models floor)."""
        if ":" in v:  # your own builder, "package.module:function", imported when the model is built
            module, _, func = v.partition(":")
            if not module or not func.isidentifier():
                raise ValueError(f"arch {v!r} must look like 'package.module:function'")
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


DataSource = Literal["fashion-mnist", "npz", "image-folder", "image-list", "callable", "text"]


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
    resize: int | None = Field(
        default=None,
        ge=1,
        description="image-folder / image-list: resize the shorter side to this (aspect kept), then center-crop "
        "to input_shape (ImageNet: 256 for 224); unset: stretch to input_shape",
    )
    stream: bool | Literal["auto"] = Field(
        default="auto",
        description="image-folder / image-list: read images from disk per batch instead of holding them in memory "
        "(auto: when the decoded float32 images would exceed 2 GiB)",
    )
    workers: int = Field(
        default=2, ge=0, le=64, description="streamed images: DataLoader worker processes that decode ahead of training"
    )
    # source: text (csv, tsv or jsonl files of sentences, tokenized with the teacher's tokenizer)
    text: str = Field(default="text", description="source text: the column holding the text")
    text_pair: str | None = Field(default=None, description="source text: a second text column (sentence pairs)")
    label: str = Field(default="label", description="source text: the label column (class names or indices)")
    max_length: int = Field(default=128, ge=2, le=4096, description="source text: tokens per sample (truncated)")
    val_path: Path | None = Field(
        default=None, description="source text: validation file (else data.val_fraction of path is held out)"
    )
    test_path: Path | None = Field(
        default=None, description="source text: test file (else data.test_fraction of path is held out)"
    )
    test_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="source text without test_path: test share")

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "callable" and not self.callable:
            raise ValueError("source 'callable' needs callable: 'package.module:function'")
        if self.callable and ":" not in self.callable:
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        if self.source in ("npz", "image-folder", "image-list") and self.path is None:
            what = {"npz": "the .npz file", "image-folder": "the folder", "image-list": "the CSV file list"}
            raise ValueError(f"source {self.source!r} needs path: ({what[self.source]})")
        if self.resize is not None and self.source not in ("image-folder", "image-list"):
            raise ValueError(f"resize applies to image files (image-folder, image-list), not source {self.source!r}")
        if self.resize is not None and self.resize < max(self.input_shape[1:]):
            raise ValueError(
                f"resize {self.resize} is smaller than the crop {list(self.input_shape[1:])} of input_shape: "
                "give resize >= the input's height and width"
            )
        if self.stream is True and self.source not in ("image-folder", "image-list"):
            raise ValueError(f"stream: true reads image files from disk; source {self.source!r} is held in memory "
                             "(stream image-folder or image-list sources)")  # fmt: skip
        if self.source == "text" and self.path is None:
            raise ValueError("source 'text' needs path: (a .csv, .tsv or .jsonl file of texts and labels)")
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
    device: str = Field(
        default="auto",
        pattern=DEVICE_PATTERN,
        description="where distill, prune recovery, QAT and teacher inference run: auto (a CUDA GPU when there is "
        "one, else the CPU), cpu, cuda or cuda:N",
    )
    amp: Literal["none", "bf16", "fp16"] = Field(
        default="none", description="mixed-precision training (autocast): bf16 (GPU or CPU) or fp16 (GPU)"
    )

    @model_validator(mode="after")
    def _text_models(self) -> ModelConfig:
        """A Hugging Face teacher goes with text data, and text students with a Hugging Face teacher."""
        text_teacher = self.teacher.arch == "hf"
        if text_teacher and self.teacher.path is None:
            raise ValueError("teacher.arch hf needs teacher.path: (the local Hugging Face folder)")
        if text_teacher and self.data.source != "text":
            raise ValueError("teacher.arch hf (a text model) needs data.source: text")
        if self.data.source == "text" and not text_teacher:
            raise ValueError("data.source text needs a text teacher: teacher.arch hf with teacher.path")
        if self.student is not None and self.student.arch in ("hf", "shrink"):
            if not text_teacher and self.student.arch == "hf":
                raise ValueError("student.arch hf is made from a text teacher (teacher.arch hf)")
            if self.student.checkpoint is not None and self.student.arch == "shrink":
                raise ValueError("student.arch shrink inherits the teacher's weights: leave student.checkpoint out")
        return self

    def shipped_precision(self) -> str:
        """The precision of the student the compile ships: its quantize pass's (int8, fp16, fp32), else fp32."""
        for p in self.passes:
            if p.name == "quantize":
                return str(getattr(p.config, "precision", "int8"))
        return "fp32"

    #: folder of the YAML file; relative paths are resolved against it
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_file: Path | None = Field(default=None, exclude=True)

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    def code_references(self) -> list[tuple[str, str]]:
        """(YAML key, ``module:function``) of every piece of Python code this config has edgekd import and call:
        builders (``teacher.arch``, ``student.arch``) and data callables (``data.callable``). A model.yaml that
        names code is code: loading it runs that code."""
        specs = ((self.teacher, "teacher"), (self.student, "student"))
        refs = [(f"{key}.arch", spec.arch) for spec, key in specs if spec is not None and ":" in spec.arch]
        if self.data.callable:
            refs.append(("data.callable", self.data.callable))
        return refs

    def fingerprint(self) -> dict[str, Any]:
        """Everything but the passes, as plain data (the pipeline hashes it for the cache)."""
        d = self.model_dump(mode="json", exclude={"passes", "base_dir", "source_file"})
        return d
