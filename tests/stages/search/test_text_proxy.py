"""teacher_kl on inherited text candidates: the teacher itself scores 0, smaller shrinks score below it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from edgekd.models import hf
from edgekd.stages.search.proxies import ProbeBatch, score
from tests.text_helpers import make_teacher, sentence


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("kl") / "teacher", steps=40)


def test_teacher_kl_is_zero_for_the_teacher_and_lower_for_smaller_shrinks(folder):
    import random

    rng = random.Random(0)
    teacher = hf.load_teacher(folder, "sequence-classification")
    tok = hf.load_tokenizer(folder)
    enc = tok([sentence(rng)[0] for _ in range(32)], max_length=16, truncation=True, padding="max_length",
              return_tensors="pt")  # fmt: skip
    batch = ProbeBatch(torch.stack([enc[n] for n in teacher.inputs], 1), torch.zeros(32, dtype=torch.long), 2)
    whole = hf.shrink(teacher, {"layers": 4, "keep": "spread"})
    scores = {
        n: score("teacher_kl", hf.shrink(teacher, {"layers": n, "keep": "spread"}), batch, teacher) for n in (1, 2)
    }
    assert score("teacher_kl", whole, batch, teacher) == pytest.approx(0, abs=1e-6)
    assert scores[1] < 0 and scores[2] < 0
    with pytest.raises(ValueError, match="give the teacher"):
        score("teacher_kl", whole, batch, None)
