"""Text data: csv/tsv/jsonl rows tokenized with the teacher's tokenizer into packed token inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.errors import DataError
from edgekd.data import TextModel, load_data
from edgekd.models import hf
from tests.text_helpers import make_teacher, write_data, write_rows


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TextModel:
    folder = make_teacher(tmp_path_factory.mktemp("text") / "teacher", steps=1)
    t = hf.load_teacher(folder, "sequence-classification")
    return TextModel(hf.load_tokenizer(folder), folder, t.inputs, t.label_names, hf.generic_labels(t.label_names))


def load(tmp_path: Path, model: TextModel, **data) -> object:
    return load_data(DataConfig(source="text", **data), CalibrationConfig(samples=8), tmp_path, 0, model)


def test_splits_are_packed_token_inputs_with_the_teachers_classes(tmp_path, model):
    files = write_data(tmp_path, 40, 10, 12)
    d = load(tmp_path, model, path=files["train"], val_path=files["val"], test_path=files["test"], max_length=12)
    assert tuple(d.train.x.shape) == (40, 3, 12) and d.train.x.dtype.is_floating_point is False
    assert (len(d.val), len(d.test), len(d.calibration)) == (10, 12, 8)
    assert d.num_classes == 2 and d.preprocessing["classes"] == ["rotten", "fresh"]
    import csv

    rows = list(csv.DictReader(files["train"].open()))
    enc = {
        tuple(model.tokenizer(r["text"], max_length=12, truncation=True, padding="max_length")["input_ids"]): r
        for r in rows
    }
    for x, y in zip(d.train.x, d.train.y, strict=True):  # row 0 is input_ids, row 1 the attention mask
        row = enc[tuple(x[0].tolist())]
        assert int(y) == ["rotten", "fresh"].index(row["label"])
        assert int(x[1].sum()) == int((x[0] != 0).sum())


def test_truncation_is_counted_and_noted(tmp_path, model):
    long = " ".join(["good"] * 30)
    path = write_rows(tmp_path / "t.csv", [(long, "fresh"), ("bad film", "rotten")] * 10)
    d = load(tmp_path, model, path=path, max_length=8, test_fraction=0.2, val_fraction=0.2)
    assert sum(d.truncated.values()) == 10
    assert any("truncated" in n for n in d.notes)
    assert len(d.test) == 4 and len(d.val) == 3 and len(d.train) == 13  # held out from data.path, seeded


def test_jsonl_and_tsv_read_alike(tmp_path, model):
    rows = [("good fun", "fresh"), ("dull plot", "rotten")] * 6
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"review": t, "y": lab}) for t, lab in rows))
    (tmp_path / "d.tsv").write_text("review\ty\n" + "\n".join(f"{t}\t{lab}" for t, lab in rows))
    a = load(tmp_path, model, path="d.jsonl", text="review", label="y", max_length=6)
    b = load(tmp_path, model, path="d.tsv", text="review", label="y", max_length=6)
    assert a.content_sha256() == b.content_sha256()


def test_bad_input_names_the_key(tmp_path, model):
    path = write_rows(tmp_path / "d.csv", [("good", "fresh"), ("bad", "meh")] * 5)
    with pytest.raises(DataError, match=r"'meh' are not classes of the teacher \(rotten, fresh\)"):
        load(tmp_path, model, path=path)
    with pytest.raises(DataError, match=r"no column 'sentence' \(data.text\); columns: text, label"):
        load(tmp_path, model, path=path, text="sentence")
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path, model, path="missing.csv")
    ints = write_rows(tmp_path / "i.csv", [("good", "1"), ("bad", "7")] * 5)
    with pytest.raises(DataError, match=r"label indices \[7\] outside the teacher's 2 classes"):
        load(tmp_path, model, path=ints)


def test_unlabelled_text_needs_no_label_column(tmp_path, model):
    path = tmp_path / "u.csv"
    path.write_text("text\n" + "\n".join(["good fun", "bad plot"] * 10))
    d = load(tmp_path, model, path=path, labels="teacher")
    assert d.unlabelled and (d.train.y == -1).all()
