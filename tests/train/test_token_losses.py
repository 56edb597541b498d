"""MiniLM and TinyBERT terms on real Hugging Face attention modules, with padding masked out."""

from __future__ import annotations

import pytest
import torch

from edgekd.models.text import TokenClassifier, attention_mask
from edgekd.train.losses import Batch, Hidden, MiniLM, relation_log_probs
from edgekd.train.pairing import Projections, capture

transformers = pytest.importorskip("transformers")


def bert(layers: int = 2, hidden: int = 32, heads: int = 4, seed: int = 0) -> TokenClassifier:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=48, max_position_embeddings=32, num_labels=2, attn_implementation="eager",
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config).eval()
    return TokenClassifier(model, ("input_ids", "attention_mask"), ["a", "b"], "test")


def packed(lengths: list[int], width: int = 10, seed: int = 0, pad_id: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (len(lengths), width), generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = pad_id
    return torch.stack([ids, mask], 1)


ATTN = "model.bert.encoder.layer.1.attention.self"


def captured(model: TokenClassifier, x: torch.Tensor, name: str = ATTN) -> Projections:
    store: dict = {}
    with capture(model, {name}, store), torch.no_grad():
        model(x)
    assert isinstance(store[name], Projections)
    return store[name]


def test_relation_heads_equal_to_attention_heads_give_the_models_own_attention() -> None:
    model = bert()
    x = packed([7, 4, 10])
    qkv = captured(model, x)
    assert qkv.heads == 4
    mask = attention_mask(model, x)
    with torch.no_grad():
        probs = model.model(**model.unpack(x), output_attentions=True).attentions[1]
    ours = relation_log_probs(qkv.q, qkv.k, 4, mask).exp()
    for i, n in enumerate([7, 4, 10]):  # real queries; padded keys get no weight in either
        assert torch.allclose(ours[i, :, :n], probs[i, :, :n], atol=1e-5)
        assert float(ours[i, :, :, n:].sum()) < 1e-6


def test_minilm_is_zero_for_a_copy_positive_otherwise_and_blind_to_padding() -> None:
    teacher, student = bert(layers=2, seed=0), bert(layers=2, seed=1)
    x = packed([6, 3, 9])
    term = MiniLM([(ATTN, ATTN)])

    def loss(s: TokenClassifier, x: torch.Tensor) -> float:
        b = Batch(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                  {(ATTN, ATTN): (captured(s, x), captured(teacher, x))}, mask=attention_mask(s, x))  # fmt: skip
        return float(term(b))

    assert loss(teacher, x) < 1e-6
    base = loss(student, x)
    assert base > 1e-5
    other_padding = packed([6, 3, 9], pad_id=7)  # what stands in padded places must not count
    assert loss(student, other_padding) == pytest.approx(base, rel=1e-5)


def test_minilm_relation_heads_compare_a_narrower_student_with_other_heads() -> None:
    teacher, student = bert(hidden=32, heads=4), bert(hidden=18, heads=3, seed=2)
    x = packed([5, 8])
    pair = {(ATTN, ATTN): (captured(student, x), captured(teacher, x))}
    zeros = torch.zeros(2, 2)
    b = Batch(zeros, zeros, torch.zeros(2, dtype=torch.long), pair, mask=attention_mask(student, x))
    assert float(MiniLM([(ATTN, ATTN)], relation_heads=2)(b)) > 0
    with pytest.raises(ValueError, match="does not split into 4 relation heads"):
        MiniLM([(ATTN, ATTN)])(b)


def test_minilm_sends_gradient_to_the_student_only() -> None:
    teacher, student = bert(seed=0), bert(seed=1)
    x = packed([6, 9])
    store_s: dict = {}
    store_t: dict = {}
    with capture(student, {ATTN}, store_s), capture(teacher, {ATTN}, store_t):
        student(x)
        teacher(x)
    b = Batch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long),
              {(ATTN, ATTN): (store_s[ATTN], store_t[ATTN])}, mask=attention_mask(student, x))  # fmt: skip
    MiniLM([(ATTN, ATTN)])(b).backward()
    q = student.model.bert.encoder.layer[1].attention.self.query.weight
    assert q.grad is not None and float(q.grad.abs().sum()) > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_hidden_projects_a_narrower_student_and_ignores_padding() -> None:
    layer = "model.bert.encoder.layer.1"
    teacher, student = bert(hidden=32), bert(hidden=16, heads=2, seed=3)
    x = packed([4, 7])
    term = Hidden([(layer, layer)])

    def outputs(x: torch.Tensor) -> tuple:
        s: dict = {}
        t: dict = {}
        with capture(student, {layer}, s), capture(teacher, {layer}, t), torch.no_grad():
            student(x)
            teacher(x)
        return s[layer], t[layer]

    out = outputs(x)
    term.build({(layer, layer): out})
    proj = next(iter(term.projections.values()))
    assert isinstance(proj, torch.nn.Linear) and proj.weight.shape == (32, 16)
    b = Batch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long),
              {(layer, layer): out}, mask=attention_mask(student, x))  # fmt: skip
    value = float(term(b))
    mask = attention_mask(student, x)
    h_s, h_t = out
    expected = float((proj(h_s) - h_t).pow(2).mean(-1)[mask].mean())
    assert value == pytest.approx(expected, rel=1e-5)
    # hidden states at padded positions may hold anything: they do not count
    h_s2 = h_s.clone()
    h_s2[~mask] = 1e3
    b2 = Batch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long),
               {(layer, layer): (h_s2, h_t)}, mask=mask)  # fmt: skip
    assert float(term(b2)) == pytest.approx(value, rel=1e-5)


def test_hidden_refuses_outputs_that_are_not_token_states() -> None:
    term = Hidden([("a", "b")])
    b = Batch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long),
              {("a", "b"): (torch.zeros(2, 8), torch.zeros(2, 8))})  # fmt: skip
    with pytest.raises(ValueError, match=r"hidden: a returned \[2, 8\], not hidden states"):
        term(b)
