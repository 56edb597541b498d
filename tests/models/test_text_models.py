"""Text models: a Hugging Face folder as teacher, students shrunk from it or configured, named-input ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.core.errors import ModelError
from edgekd.models import hf
from edgekd.models.count import count_macs
from tests.text_helpers import make_teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("text") / "teacher", steps=5)


@pytest.fixture(scope="module")
def teacher(teacher_dir: Path) -> hf.TokenClassifier:
    return hf.load_teacher(teacher_dir, "sequence-classification")


def packed(teacher: hf.TokenClassifier, folder: Path, texts: list[str], length: int = 16) -> torch.Tensor:
    tok = hf.load_tokenizer(folder)
    enc = tok(texts, max_length=length, truncation=True, padding="max_length", return_tensors="pt")
    return torch.stack([enc[n] for n in teacher.inputs], 1)


def test_teacher_loads_with_its_token_inputs_and_class_names(teacher, teacher_dir):
    assert teacher.inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert teacher.label_names == ["rotten", "fresh"]
    x = packed(teacher, teacher_dir, ["a great film", "dull and boring plot was flat"])
    with torch.no_grad():  # the packed form gives what the model gives on its own inputs
        ref = teacher.model(**{n: x[:, i] for i, n in enumerate(teacher.inputs)}).logits
        assert torch.allclose(teacher(x), ref, atol=1e-5)  # padding columns cut: same logits


def test_missing_tokenizer_and_folder_are_clear_errors(tmp_path, teacher_dir):
    with pytest.raises(ModelError, match="no such folder"):
        hf.load_teacher(tmp_path / "nope", "sequence-classification")
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in teacher_dir.iterdir():
        if not f.name.startswith(("tokenizer", "vocab", "special")):
            (bare / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelError, match="no tokenizer files"):
        hf.load_teacher(bare, "sequence-classification")


def test_kept_layers():
    assert hf.kept_layers(6, 3, "every_other", "s") == [1, 3, 5]
    assert hf.kept_layers(6, 2, "first", "s") == [0, 1]
    assert hf.kept_layers(6, 3, "spread", "s") == [1, 3, 5]
    assert hf.kept_layers(6, [0, 2, 5], "every_other", "s") == [0, 2, 5]
    with pytest.raises(ModelError, match="distinct, increasing"):
        hf.kept_layers(6, [3, 1], "first", "s")
    with pytest.raises(ModelError, match="every_other gives 3"):
        hf.kept_layers(6, 4, "every_other", "s")


def test_shrink_inherits_the_kept_layers_and_the_most_important_ffn_channels(teacher):
    student = hf.shrink(teacher, {"layers": [1, 3], "intermediate_size": 16})
    t_layers, s_layers = hf.encoder_layers(teacher.model, "t"), hf.encoder_layers(student.model, "s")
    assert len(s_layers) == 2 and student.model.config.num_hidden_layers == 2
    assert torch.equal(s_layers[0].attention.self.query.weight, t_layers[1].attention.self.query.weight)
    assert torch.equal(s_layers[1].attention.self.query.weight, t_layers[3].attention.self.query.weight)
    up_t, up_s = t_layers[3].intermediate.dense.weight, s_layers[1].intermediate.dense.weight
    keep = (up_t.norm(dim=1) * t_layers[3].output.dense.weight.norm(dim=0)).topk(16).indices.sort().values
    assert up_s.shape == (16, up_t.shape[1]) and torch.equal(up_s, up_t[keep])
    assert torch.equal(s_layers[1].output.dense.weight, t_layers[3].output.dense.weight[:, keep])
    emb_s, emb_t = student.model.bert.embeddings.word_embeddings.weight, teacher.model.bert.embeddings.word_embeddings
    assert torch.equal(emb_s, emb_t.weight)
    assert emb_s.data_ptr() != emb_t.weight.data_ptr()  # a copy: training the student leaves the teacher alone
    assert count_macs(student, (3, 16)) < count_macs(teacher, (3, 16)) / 2
    with pytest.raises(ModelError, match="intermediate_size 999"):
        hf.shrink(teacher, {"layers": 2, "intermediate_size": 999})


def test_from_config_builds_the_family_and_inherits_what_fits(teacher):
    student = hf.from_config(teacher, {"num_hidden_layers": 2})
    s_layers, t_layers = hf.encoder_layers(student.model, "s"), hf.encoder_layers(teacher.model, "t")
    assert len(s_layers) == 2  # spread over 4 teacher layers: 1 and 3
    assert torch.equal(s_layers[1].output.dense.weight, t_layers[3].output.dense.weight)
    narrow = hf.from_config(teacher, {"num_hidden_layers": 1, "intermediate_size": 8})
    assert narrow.model.bert.encoder.layer[0].intermediate.dense.out_features == 8
    with pytest.raises(ModelError, match="not in the teacher's config"):
        hf.from_config(teacher, {"num_layers": 2})


def test_from_config_without_inheritance_is_randomly_initialised(teacher):
    torch.manual_seed(0)
    random = hf.from_config(teacher, {"num_hidden_layers": 2, "inherit": False})
    emb_s, emb_t = (
        random.model.bert.embeddings.word_embeddings.weight,
        teacher.model.bert.embeddings.word_embeddings.weight,
    )
    assert emb_s.shape == emb_t.shape and not torch.equal(emb_s, emb_t)
    assert not torch.equal(random.model.bert.encoder.layer[1].output.dense.weight,
                           teacher.model.bert.encoder.layer[3].output.dense.weight)  # fmt: skip
    with pytest.raises(ModelError, match=r"params\.inherit 'no': true or false"):
        hf.from_config(teacher, {"num_hidden_layers": 2, "inherit": "no"})


def test_onnx_takes_named_token_inputs_with_a_dynamic_sequence(teacher, teacher_dir, tmp_path):
    student = hf.shrink(teacher, {"layers": 2})
    x = packed(teacher, teacher_dir, ["good fun movie", "awful weak story and the ending was silly"])
    path = export_onnx(student, x[:1], tmp_path / "s.onnx", dynamic_batch=True)
    ort = OrtModel(path)
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(path))
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        (n, "tensor(int64)", ["batch", "sequence"]) for n in teacher.inputs
    ]
    with torch.no_grad():
        want = student(x).numpy()
    assert np.abs(ort.predict(x.numpy()) - want).max() < 1e-4
    short = {n: x[:, i, :9].numpy() for i, n in enumerate(teacher.inputs)}  # any length up to the trained one
    assert np.abs(sess.run(None, short)[0] - want).max() < 1e-4


def test_onnx_exported_from_a_sample_without_padding_still_masks_padding(teacher, teacher_dir, tmp_path):
    """transformers drops an all-ones mask at trace time: an export from a full-length sample must not bake that in."""
    student = hf.shrink(teacher, {"layers": 2})
    x = packed(teacher, teacher_dir, ["good fun movie", "awful weak story and the ending was silly"])
    full = x[:1].clone()
    full[:, teacher.inputs.index("attention_mask")] = 1  # the example fills every position
    path = export_onnx(student, full, tmp_path / "full.onnx", dynamic_batch=True)
    with torch.no_grad():
        want = student(x).numpy()
    assert np.abs(OrtModel(path).predict(x.numpy()) - want).max() < 1e-4


def test_shrink_keeps_the_most_important_heads_and_still_exports(teacher, teacher_dir, tmp_path):
    student = hf.shrink(teacher, {"layers": [1, 3], "heads": 2})
    t_attn = hf.encoder_layers(teacher.model, "t")[3].attention
    s_attn = hf.encoder_layers(student.model, "s")[1].attention
    n, size = t_attn.self.num_attention_heads, t_attn.self.attention_head_size  # 4 heads of 8
    value = t_attn.self.value.weight.view(n, size, -1).flatten(1).norm(dim=1)
    out = t_attn.output.dense.weight.view(-1, n, size).transpose(0, 1).flatten(1).norm(dim=1)
    heads = (value * out).topk(2).indices.sort().values
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads.tolist()])
    assert s_attn.self.num_attention_heads == 2 and s_attn.self.query.weight.shape == (2 * size, n * size)
    assert torch.equal(s_attn.self.key.weight, t_attn.self.key.weight[rows])
    assert torch.equal(s_attn.output.dense.weight, t_attn.output.dense.weight[:, rows])
    x = packed(teacher, teacher_dir, ["good fun movie", "awful weak story and the ending was silly"])
    with torch.no_grad():
        want = student(x).numpy()
    path = export_onnx(student, x[:1], tmp_path / "heads.onnx", dynamic_batch=True)
    assert np.abs(OrtModel(path).predict(x.numpy()) - want).max() < 1e-4
    assert count_macs(student, (3, 16)) < count_macs(hf.shrink(teacher, {"layers": [1, 3]}), (3, 16))
    with pytest.raises(ModelError, match=r"params\.heads 5: the teacher has 4"):
        hf.shrink(teacher, {"layers": 2, "heads": 5})
