"""A tiny real Hugging Face text classifier and its data, made in seconds for the text-model tests.

A 4-layer BERT (hidden 32) with a WordPiece tokenizer over a small vocabulary, fine-tuned on synthetic
sentiment sentences (the label is which of two word lists has more words in the sentence), saved with
``save_pretrained`` like any user's folder; the data is written as csv files with class names as labels.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch

GOOD = ["good", "great", "fine", "lovely", "superb", "fun", "moving", "smart", "warm", "bright"]
BAD = ["bad", "awful", "dull", "boring", "weak", "flat", "silly", "tired", "cold", "messy"]
FILLER = ["the", "a", "movie", "film", "plot", "actors", "story", "and", "was", "is", "very", "quite", "ending"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["rotten", "fresh"]


def sentence(rng: random.Random) -> tuple[str, str]:
    """One to three words of one polarity among two to nine filler words; the label is the polarity."""
    fresh = rng.random() < 0.5
    words = rng.sample(GOOD if fresh else BAD, rng.randint(1, 3))
    words += [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
    rng.shuffle(words)
    return " ".join(words), LABELS[int(fresh)]


def write_rows(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_data(folder: Path, n_train: int = 400, n_val: int = 100, n_test: int = 100, seed: int = 0) -> dict:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        out[name] = write_rows(folder / f"{name}.csv", [sentence(rng) for _ in range(n)])
    return out


def make_teacher(folder: Path, layers: int = 4, steps: int = 60, seed: int = 0) -> Path:
    """Fine-tune a tiny BERT classifier on synthetic sentences and save it (model + tokenizer) in ``folder``."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = SPECIAL + GOOD + BAD + FILLER
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=2,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    rng = random.Random(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        batch = [sentence(rng) for _ in range(32)]
        enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
        y = torch.tensor([LABELS.index(lab) for _, lab in batch])
        loss = model(**enc, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def text_config(folder: Path, teacher: Path | None = None, **overrides: object) -> dict:
    """A model.yaml dict compiling the tiny text teacher (``teacher``, else made in ``folder/teacher`` once) on csv
    data."""
    teacher = teacher or folder / "teacher"
    if not (teacher / "config.json").is_file():
        make_teacher(teacher)
    files = write_data(folder / "data")
    cfg: dict = {
        "name": "tiny-text",
        "teacher": {"arch": "hf", "path": str(teacher), "task": "sequence-classification"},
        "student": {"arch": "shrink", "params": {"layers": 2}},
        "data": {
            "source": "text",
            "path": str(files["train"].relative_to(folder)),
            "val_path": str(files["val"].relative_to(folder)),
            "test_path": str(files["test"].relative_to(folder)),
            "max_length": 16,
        },
        "calibration": {"samples": 32},
        "passes": [
            {"distill": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 1e-3}}},
            {"quantize": {"precision": "int8", "method": "dynamic"}},
            {"lower": {"parity": {"samples": 64, "min_top1": 80.0, "min_cosine": 0.9}}},
            {"profile": {"warmup": 2, "runs": 10, "rounds": 2, "sequence_lengths": [8, 16]}},
            {"report": {}},
        ],
    }
    cfg.update(overrides)
    return cfg
