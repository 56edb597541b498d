"""Text data (``data.source: text``): csv, tsv or jsonl files of sentences, tokenized with the teacher's tokenizer.

```yaml
data: {source: text, path: train.csv, val_path: val.csv, test_path: test.csv, text: text, label: label,
       max_length: 64}
```

Each split becomes packed token inputs ``(N, F, max_length)`` int64 (:mod:`edgekd.models.text`): the rows are the
model's inputs in its order (``input_ids``, ``attention_mask``, ``token_type_ids``), padded to ``max_length``.
Longer texts are truncated and counted (a note in the report). Labels are class names, matched to the teacher's
``id2label``, or class indices; a teacher with no class names (``LABEL_0`` ...) takes the names in sorted order.
Without ``val_path`` / ``test_path`` the validation and test splits are seeded random shares of ``path``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.errors import DataError
from edgekd.data.dataset import DataBundle, Split

SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}


@dataclass(frozen=True)
class TextModel:
    """What the data needs of the text teacher: its tokenizer (and the folder it came from), its token inputs in
    packing order and its class names."""

    tokenizer: Any
    tokenizer_dir: Path
    inputs: tuple[str, ...]
    label_names: list[str]
    generic_labels: bool  # the teacher's names are transformers' defaults (LABEL_0, ...): none were given


def read_rows(path: Path, key: str) -> list[dict[str, Any]]:
    """The rows of a csv/tsv (header line) or jsonl (one object per line) file."""
    if not path.is_file():
        raise DataError(f"{key} {path}: no such file", fix=f"set {key} to a .csv, .tsv or .jsonl file")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{key} {path}: unknown file type {path.suffix!r}", fix="give a .csv, .tsv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{key} {path}: not UTF-8 text ({exc})", fix="save the file as UTF-8") from exc
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{key} {path}, line {n}: not JSON ({exc})", fix="one JSON object per line") from exc
            if not isinstance(row, dict):
                raise DataError(f"{key} {path}, line {n}: not a JSON object", fix="one JSON object per line")
            rows.append(row)
        return rows
    return list(csv.DictReader(text.splitlines(), delimiter=SUFFIXES[path.suffix]))  # type: ignore[arg-type]


def _column(rows: list[dict[str, Any]], column: str, key: str, path: Path, field: str) -> list[Any]:
    if rows and column not in rows[0]:
        raise DataError(
            f"{path}: no column {column!r} (data.{field}); columns: {', '.join(map(str, rows[0]))}",
            fix=f"set data.{field} to the column that holds the {'labels' if field == 'label' else 'texts'}",
        )
    del key
    return [r.get(column) for r in rows]


def label_ids(values: Sequence[Any], model: TextModel, path: Path) -> tuple[np.ndarray, list[str]]:
    """Class indices of the label values, and the class names (the teacher's, or the data's sorted names)."""
    names = list(model.label_names)
    text = [str(v).strip() for v in values]
    if all(t.lstrip("-").isdigit() for t in text):  # class indices
        ids = np.array([int(t) for t in text], dtype=np.int64)
        bad = sorted({int(i) for i in ids if not 0 <= i < len(names)})
        if bad:
            raise DataError(
                f"{path}: label indices {bad[:5]} outside the teacher's {len(names)} classes",
                fix=f"use class indices 0..{len(names) - 1} or the class names {names}",
            )
        return ids, names
    if model.generic_labels:
        found = sorted(set(text))
        if len(found) > len(names):
            raise DataError(
                f"{path}: {len(found)} label values ({', '.join(found[:6])}) but the teacher has {len(names)} classes",
                fix="give the teacher's classes only, or fine-tune a teacher with one class per label",
            )
        names = found + names[len(found) :]
    index = {n: i for i, n in enumerate(names)}
    unmapped = sorted({t for t in text if t not in index})
    if unmapped:
        raise DataError(
            f"{path}: label value(s) {', '.join(map(repr, unmapped[:5]))} are not classes of the teacher "
            f"({', '.join(names)})",
            fix="use the teacher's class names (its config.json id2label) or class indices",
        )
    return np.array([index[t] for t in text], dtype=np.int64), names


def encode(texts: list[str], pairs: list[str] | None, model: TextModel, max_length: int) -> tuple[torch.Tensor, int]:
    """Packed token inputs (N, F, max_length) int64 and the number of texts longer than ``max_length`` tokens."""
    tok = model.tokenizer
    args = (texts, pairs) if pairs is not None else (texts,)
    enc = tok(*args, max_length=max_length, truncation=True, padding="max_length", return_tensors="np")
    full = tok(*args, truncation=False, padding=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    rows = []
    for name in model.inputs:
        if name in enc:
            rows.append(np.asarray(enc[name], dtype=np.int64))
        elif name == "token_type_ids":
            rows.append(np.zeros((len(texts), max_length), dtype=np.int64))
        else:
            raise DataError(
                f"the teacher's tokenizer gives no {name} (it gives {', '.join(enc)})",
                fix="save the tokenizer the teacher was trained with beside it",
            )
    packed = np.stack(rows, axis=1) if texts else np.zeros((0, len(model.inputs), max_length), dtype=np.int64)
    return torch.from_numpy(packed), int(truncated)


def _texts(rows: list[dict[str, Any]], cfg: DataConfig, path: Path, key: str) -> tuple[list[str], list[str] | None]:
    texts = _column(rows, cfg.text, key, path, "text")
    empty = [i for i, t in enumerate(texts) if t is None or not str(t).strip()]
    if empty:
        raise DataError(
            f"{path}: {len(empty)} row(s) with no text in column {cfg.text!r} (first: row {empty[0] + 1})",
            fix="remove the empty rows or fill them in",
        )
    pairs = None
    if cfg.text_pair is not None:
        pairs = [str(t or "") for t in _column(rows, cfg.text_pair, key, path, "text_pair")]
    return [str(t) for t in texts], pairs


def load_text(
    cfg: DataConfig, calibration: CalibrationConfig, base_dir: Any, seed: int, model: TextModel
) -> DataBundle:
    """The train / val / test / calibration splits of a text data set, tokenized for ``model``."""
    base = Path(base_dir)

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    assert cfg.path is not None
    files = {"train": (resolve(cfg.path), "data.path")}
    if cfg.val_path is not None:
        files["val"] = (resolve(cfg.val_path), "data.val_path")
    if cfg.test_path is not None:
        files["test"] = (resolve(cfg.test_path), "data.test_path")
    tables = {split: read_rows(path, key) for split, (path, key) in files.items()}
    for split, rows in tables.items():
        if not rows:
            raise DataError(f"{files[split][1]} {files[split][0]}: no rows", fix="give a file with a header and rows")
    if calibration.source == "npz":
        raise DataError("calibration.source npz holds images; text calibrates on its own splits",
                        fix="use calibration.source train or val")  # fmt: skip
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    pool = tables["train"]
    order = rng.permutation(len(pool))
    cut = {}
    if "test" not in tables:
        n_test = max(1, round(len(pool) * cfg.test_fraction))
        cut["test"], order = order[:n_test], order[n_test:]
        notes.append(f"data: no data.test_path: {n_test} rows of data.path ({cfg.test_fraction:.0%}) held out as test")
    if "val" not in tables:
        n_val = round(len(order) * cfg.val_fraction)
        cut["val"], order = order[:n_val], order[n_val:]
    cut["train"] = order
    rows = {split: [pool[i] for i in idx] for split, idx in cut.items()}
    rows.update({s: r for s, r in tables.items() if s != "train"})
    if cfg.train_limit:
        rows["train"] = rows["train"][: cfg.train_limit]
    if cfg.test_limit:
        rows["test"] = rows["test"][: cfg.test_limit]
        notes.append(f"data: accuracies are on the first {len(rows['test'])} test texts (data.test_limit)")
    unlabelled = cfg.labels == "teacher"
    splits: dict[str, Split] = {}
    truncated: dict[str, int] = {}
    names = list(model.label_names)
    for split in ("train", "val", "test"):
        path = files.get(split, files["train"])[0]
        texts, pairs = _texts(rows[split], cfg, path, files.get(split, files["train"])[1])
        x, truncated[split] = encode(texts, pairs, model, cfg.max_length)
        if unlabelled:
            y = torch.full((len(texts),), -1, dtype=torch.int64)
        else:
            ids, names = label_ids(_column(rows[split], cfg.label, "", path, "label"), model, path)
            y = torch.from_numpy(ids)
        splits[split] = Split(x, y)
    if len(splits["train"]) == 0:
        raise DataError(f"data.path {files['train'][0]}: no training rows left", fix="give more rows")
    if any(truncated.values()):
        notes.append(
            f"data: texts longer than data.max_length {cfg.max_length} tokens were truncated: "
            + ", ".join(f"{n} of {len(splits[s])} {s}" for s, n in truncated.items() if n)
        )
    if unlabelled:
        notes.append(
            "data: labels: teacher: the teacher's predictions label the training, validation and test texts; "
            "every accuracy reported is top-1 agreement with the teacher"
        )
    if model.generic_labels and names != model.label_names:
        notes.append(f"data: the teacher names no classes (id2label); class i is the i-th sorted label: {names}")
    calib_pool = {"train": splits["train"], "val": splits["val"]}[calibration.source]
    if calibration.samples > len(calib_pool):
        raise DataError(
            f"calibration.samples is {calibration.samples} but the {calibration.source} split holds only "
            f"{len(calib_pool)} texts",
            fix=f"set calibration.samples to at most {len(calib_pool)}",
        )
    origin = f"text {files['train'][0].name}" + "".join(f" + {p.name}" for s, (p, _) in files.items() if s != "train")
    return DataBundle(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        calibration=calib_pool.take(calibration.samples),
        num_classes=len(names),
        input_shape=(len(model.inputs), cfg.max_length),  # type: ignore[arg-type]
        mean=[],
        std=[],
        source=origin,
        notes=notes,
        unlabelled=unlabelled,
        preprocessing={
            "kind": "text",
            "inputs": list(model.inputs),
            "dtype": "int64",
            "max_length": cfg.max_length,
            "padding": "right, to any length up to max_length (the ONNX file takes a dynamic sequence length)",
            "truncation": True,
            "tokenizer": "the tokenizer files beside the artifacts (tokenizer/)",
            "classes": names,
            **({"labels": "teacher"} if unlabelled else {}),
        },
        truncated=truncated,
        tokenizer_dir=model.tokenizer_dir,
        mask_token_id=getattr(model.tokenizer, "mask_token_id", None),
        special_token_ids=tuple(getattr(model.tokenizer, "all_special_ids", ())),
    )
