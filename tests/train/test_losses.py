"""Each loss term on tiny tensors against a value computed by hand (numpy), plus its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.train.losses import (
    AT,
    CE,
    DIST,
    DKD,
    KD,
    RKD,
    SP,
    Batch,
    DisWOTRelation,
    DisWOTSemantic,
    FitNet,
    Sinkhorn,
    attention_map,
    build_term,
    kd_kl,
    minilm_loss,
)

S = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 0.3]])
T = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.5, 1.5]])
Y = torch.tensor([0, 2])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _batch(**kw: object) -> Batch:
    return Batch(S.clone(), T.clone(), Y, **kw)  # type: ignore[arg-type]


def test_ce_and_kd_match_hand_computation() -> None:
    ce = -np.mean([np.log(_softmax(S.numpy()[i])[Y[i]]) for i in range(2)])
    assert math.isclose(float(CE()(_batch())), ce, rel_tol=1e-5)
    t = 2.0
    p_t, p_s = _softmax(T.numpy() / t), _softmax(S.numpy() / t)
    kd = np.mean((p_t * (np.log(p_t) - np.log(p_s))).sum(1)) * t * t
    assert math.isclose(float(KD(temperature=t)(_batch())), kd, rel_tol=1e-5)
    assert float(kd_kl(T, T, 4.0)) < 1e-6


def test_dkd_matches_its_definition() -> None:
    t = 1.0
    p_s, p_t = _softmax(S.numpy() / t), _softmax(T.numpy() / t)
    tckd = nckd = 0.0
    for i, y in enumerate(Y.tolist()):
        bs = np.array([p_s[i, y], 1 - p_s[i, y]])
        bt = np.array([p_t[i, y], 1 - p_t[i, y]])
        tckd += (bt * np.log(bt / bs)).sum()
        rest = [k for k in range(3) if k != y]
        qs, qt = _softmax(S.numpy()[i, rest] / t), _softmax(T.numpy()[i, rest] / t)
        nckd += (qt * np.log(qt / qs)).sum()
    expected = (2.0 * tckd + 3.0 * nckd) / 2
    assert math.isclose(float(DKD(alpha=2.0, beta=3.0, temperature=t)(_batch())), expected, rel_tol=1e-4)


def test_dkd_warmup_ramps_the_weight() -> None:
    term = DKD(warmup_steps=4)
    term.train()
    first = float(term(_batch()))
    for _ in range(5):
        last = float(term(_batch()))
    assert math.isclose(first * 4, last, rel_tol=1e-5)


def test_dist_is_one_minus_pearson() -> None:
    p_s, p_t = _softmax(S.numpy()), _softmax(T.numpy())
    inter = np.mean([1 - np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(2)])
    intra = np.mean([1 - np.corrcoef(p_s[:, k], p_t[:, k])[0, 1] for k in range(3)])
    assert math.isclose(float(DIST(beta=1, gamma=2)(_batch())), inter + 2 * intra, rel_tol=1e-4)
    assert float(DIST()(Batch(T, T, Y))) < 1e-6


def test_sinkhorn_matches_numpy_and_vanishes_on_equal_inputs() -> None:
    t, eps = 4.0, 0.1
    p, q = _softmax(S.numpy() / t), _softmax(T.numpy() / t)
    cost = 1 - np.eye(3)
    kernel = np.exp(-cost / eps)
    total = 0.0
    for i in range(2):
        u = np.ones(3) / 3
        for _ in range(20):
            v = q[i] / (u @ kernel)
            u = p[i] / (v @ kernel.T)
        total += (u[:, None] * kernel * v[None, :] * cost).sum()
    assert math.isclose(float(Sinkhorn(temperature=t, epsilon=eps)(_batch())), total / 2 * t * t, rel_tol=1e-4)
    assert float(Sinkhorn()(Batch(T, T, Y))) < 0.02


def test_fitnet_builds_a_regressor_only_when_channels_differ() -> None:
    term = FitNet(pairs=[("a", "b"), ("c", "d")])
    f_s, f_t = torch.randn(2, 8, 14, 14), torch.randn(2, 16, 7, 7)
    term.build({("a", "b"): (f_s, f_t), ("c", "d"): (f_t, f_t)})
    reg = term.regressors["a->b"]
    assert isinstance(reg[0], torch.nn.Conv2d) and (reg[0].in_channels, reg[0].out_channels) == (8, 16)
    assert isinstance(term.regressors["c->d"], torch.nn.Identity)
    loss = term(Batch(S, T, Y, {("a", "b"): (f_s.requires_grad_(True), f_t), ("c", "d"): (f_t, f_t)}))
    loss.backward()
    assert f_s.grad is not None and reg[0].weight.grad is not None
    # the identity pair contributes exactly 0: the loss is half the regressed pair's MSE
    out = F.interpolate(reg(f_s), size=(7, 7), mode="bilinear", align_corners=False)
    assert math.isclose(float(loss), float(F.mse_loss(out, f_t)) / 2, rel_tol=1e-5)


def test_attention_transfer_hand_value() -> None:
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # 1 x 2 channels x 1 x 2
    m = np.array([(1 + 9) / 2, (4 + 0) / 2])
    assert np.allclose(attention_map(f).numpy(), m / np.linalg.norm(m))
    g = torch.tensor([[[[2.0, 2.0]], [[0.0, 0.0]]]])
    expected = ((m / np.linalg.norm(m) - np.array([1, 1]) / math.sqrt(2)) ** 2).mean()
    assert math.isclose(float(AT(pairs=[("s", "t")])(Batch(S, T, Y, {("s", "t"): (f, g)}))), expected, rel_tol=1e-5)


def test_sp_and_diswot_relation_hand_value_and_zero_on_equal() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])

    def gram(x: np.ndarray) -> np.ndarray:
        g = x @ x.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = ((gram(a.numpy()) - gram(b.numpy())) ** 2).sum() / 4
    for term in (SP(pairs=[("s", "t")]), DisWOTRelation(pairs=[("s", "t")])):
        assert math.isclose(float(term(Batch(S, T, Y, {("s", "t"): (a, b)}))), expected, rel_tol=1e-5)
        assert float(term(Batch(S, T, Y, {("s", "t"): (a, a)}))) == 0.0


def test_rkd_is_scale_invariant_and_positive_otherwise() -> None:
    e = torch.randn(6, 4)
    term = RKD(pairs=[("s", "t")])
    assert float(term(Batch(S, T, Y, {("s", "t"): (2 * e, e)}))) < 1e-6
    assert float(term(Batch(S, T, Y, {("s", "t"): (torch.randn(6, 4), e)}))) > 0


def test_diswot_semantic_compares_class_relations_across_widths() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    f_s, f_t = torch.randn(8, 4, 2, 2), torch.randn(8, 16, 2, 2)  # different channel counts
    term = DisWOTSemantic(pairs=[("s", "t")])
    value = float(term(Batch(logits, logits, labels, {("s", "t"): (f_s, f_t)})))
    assert value > 0
    assert float(term(Batch(logits, logits, labels, {("s", "t"): (f_t, f_t)}))) < 1e-10
    # by hand: g = (softmax - onehot)^T f / N, G = g g^T row-normalised, mean squared difference
    pooled = f_s.flatten(2).mean(2).numpy()
    g = (_softmax(logits.numpy()) - np.eye(3)[labels.numpy()]).T @ pooled / 8
    gs = g @ g.T
    gs /= np.linalg.norm(gs, axis=1, keepdims=True)
    pooled_t = f_t.flatten(2).mean(2).numpy()
    g2 = (_softmax(logits.numpy()) - np.eye(3)[labels.numpy()]).T @ pooled_t / 8
    gt = g2 @ g2.T
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    assert math.isclose(value, ((gs - gt) ** 2).sum() / 9, rel_tol=1e-4)


def test_minilm_hand_value() -> None:
    a_t = torch.tensor([[[[0.75, 0.25], [0.5, 0.5]]]])
    a_s = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    kl = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5) + 0.0) / 2
    assert math.isclose(float(minilm_loss(a_s, a_t, v, v)), kl, rel_tol=1e-5)
    assert float(minilm_loss(a_t, a_t, v, v)) < 1e-7


@pytest.mark.parametrize("name", ["ce", "kd", "dkd", "dist", "sinkhorn"])
def test_logit_terms_send_gradient_to_the_student_only(name: str) -> None:
    s = S.clone().requires_grad_(True)
    t = T.clone().requires_grad_(True)
    build_term(name, {})(Batch(s, t, Y)).backward()  # the term itself must keep the teacher out of the graph
    assert s.grad is not None and s.grad.abs().sum() > 0 and (t.grad is None or not t.grad.abs().sum() > 0)


def test_feature_terms_send_no_gradient_into_the_teacher_features() -> None:
    fs = torch.randn(4, 3, 5, 5, requires_grad=True)
    ft = torch.randn(4, 3, 5, 5, requires_grad=True)
    pairs = [{"student": "a", "teacher": "b"}]
    for name in ("at", "sp", "rkd", "diswot_relation"):
        fs.grad = ft.grad = None
        build_term(name, {"pairs": pairs})(Batch(S, T, Y, {("a", "b"): (fs, ft)})).backward()
        assert fs.grad is not None and fs.grad.abs().sum() > 0, name
        assert ft.grad is None, name


def test_rkd_distance_matches_a_hand_computed_value() -> None:
    from edgekd.train.losses import RKD

    e_t = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # pairwise 3, 4, 5: mean 4
    e_s = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 4.0]])  # pairwise 6, 4, sqrt(52)
    assert torch.allclose(RKD._dist(e_t), torch.tensor([[0, 0.75, 1.0], [0.75, 0, 1.25], [1.0, 1.25, 0]]))
    mean_s = (6 + 4 + math.sqrt(52)) / 3
    diffs = [6 / mean_s - 0.75, 4 / mean_s - 1.0, math.sqrt(52) / mean_s - 1.25]
    expected = 2 * sum(0.5 * d * d for d in diffs) / 9  # smooth L1 (beta 1) over the 3x3 matrix, diagonal 0
    term = RKD([("a", "b")], distance=1.0, angle=0.0)
    got = term(Batch(S, T, Y, {("a", "b"): (e_s, e_t)}))
    assert math.isclose(float(got), expected, rel_tol=1e-5)


def test_rkd_diagonal_is_exactly_zero_whatever_cdist_rounds() -> None:
    from edgekd.train.losses import RKD

    e = torch.randn(32, 64, generator=torch.Generator().manual_seed(0)) * 1e3 + 1e4  # >25 rows: cdist uses mm
    d = RKD._dist(e)
    off = ~torch.eye(32, dtype=torch.bool)
    assert torch.equal(d.diagonal(), torch.zeros(32)) and math.isclose(float(d[off].mean()), 1.0, rel_tol=1e-5)
