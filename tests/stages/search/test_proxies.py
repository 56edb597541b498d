"""Zero-cost proxies on tiny models: hand-computed DisWOT distances, known orderings, determinism."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.data.sources import FASHION_MNIST_SUBSET
from edgekd.models import zoo
from edgekd.stages.search import proxies
from edgekd.stages.search.proxies import (
    PROXIES,
    TEACHER_SEED_OFFSET,
    ProbeBatch,
    diswot_distances,
    diswot_stats,
    relation_distance,
    score,
    semantic_distance,
)


@pytest.fixture(scope="module")
def batch() -> ProbeBatch:
    with np.load(FASHION_MNIST_SUBSET) as f:  # one real mini-batch of Fashion-MNIST
        x = torch.from_numpy(f["x_train"][:32]).float() / 255
        y = torch.from_numpy(f["y_train"][:32].astype(np.int64))
    return ProbeBatch((x - 0.286) / 0.353, y, 10)


def net(depth: int = 8, width: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.build("resnet", {"depth": depth, "width": width, "in_channels": 1})


def _norm_rows(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def test_semantic_distance_by_hand_same_width() -> None:
    g_s, g_t = torch.randn(3, 4), torch.randn(3, 4)
    expected = sum(
        ((_norm_rows(np.outer(a, a)) - _norm_rows(np.outer(b, b))) ** 2).sum()
        for a, b in zip(g_s.numpy(), g_t.numpy(), strict=True)
    ) / (4 * 3)
    assert math.isclose(semantic_distance(g_s, g_t), expected, rel_tol=1e-5)
    assert semantic_distance(g_s, 3 * g_s) < 1e-10  # row normalisation: scale does not matter


def test_semantic_distance_across_widths_uses_class_relations() -> None:
    g_s, g_t = torch.randn(3, 4), torch.randn(3, 16)
    expected = ((_norm_rows(g_s.numpy() @ g_s.numpy().T) - _norm_rows(g_t.numpy() @ g_t.numpy().T)) ** 2).sum() / 9
    assert math.isclose(semantic_distance(g_s, g_t), expected, rel_tol=1e-5)


def test_relation_distance_by_hand() -> None:
    a_s, a_t = torch.randn(5, 7), torch.randn(5, 11)
    expected = ((_norm_rows(a_t.numpy() @ a_t.numpy().T) - _norm_rows(a_s.numpy() @ a_s.numpy().T)) ** 2).sum() / 25
    assert math.isclose(relation_distance(a_s, a_t), expected, rel_tol=1e-5)
    assert relation_distance(a_s, 2 * a_s) < 1e-10


def test_diswot_is_deterministic_negative_and_does_not_touch_the_models(batch: ProbeBatch) -> None:
    student, teacher = net(8, 4), net(14, 8)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    a = score("diswot", student, batch, teacher, seed=1)
    assert a == score("diswot", student, batch, teacher, seed=1)
    assert a < 0 and a != score("diswot", student, batch, teacher, seed=2)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_size_proxies_order_width_and_depth(batch: ProbeBatch) -> None:
    for name in ("params", "macs", "synflow"):
        assert score(name, net(8, 8), batch) > score(name, net(8, 4), batch), name
        assert score(name, net(14, 4), batch) > score(name, net(8, 4), batch), name


def test_zen_grows_with_width(batch: ProbeBatch) -> None:
    assert score("zen", net(8, 16), batch) > score("zen", net(8, 4), batch)


@pytest.mark.parametrize("name", ["grad_norm", "snip", "naswot", "zen", "synflow"])
def test_proxies_are_finite_and_deterministic(name: str, batch: ProbeBatch) -> None:
    a, b = score(name, net(), batch, seed=3), score(name, net(), batch, seed=3)
    assert math.isfinite(a) and a == b


def test_every_proxy_is_registered() -> None:
    assert set(PROXIES) == {"diswot", "params", "macs", "grad_norm", "snip", "synflow", "naswot", "zen", "teacher_kl"}


def test_a_model_without_a_feature_map_is_refused_with_how_to_name_it(batch: ProbeBatch) -> None:
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(ModelError, match=r"no feature map \(N, C, H, W\) before its classifier '1'") as err:
        score("zen", plain, batch)
    assert "taps.features" in (err.value.fix or "")


class UserCNN(torch.nn.Module):
    """A new user's digit classifier: two Sequentials, no features() method, no fc attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        )  # fmt: skip
        self.classifier = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(16 * 14 * 14, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_a_user_cnn_is_a_diswot_teacher(batch: ProbeBatch) -> None:
    """Before: 'teacher UserCNN has no features(x) method and fc classifier'. The taps are found by hooks: the
    classifier is the last Linear, the feature map the last (N, C, H, W) output before it."""
    from edgekd.models.taps import run_tapped

    teacher = UserCNN()
    t = run_tapped(teacher, batch.x)
    assert t.classifier is teacher.classifier[3] and t.features.shape[1:] == (16, 14, 14)
    assert t.pooled.shape[1] == 32  # the classifier's own input
    a, b = score("diswot", net(), batch, teacher, seed=1), score("diswot", net(), batch, teacher, seed=1)
    assert math.isfinite(a) and a == b


def test_taps_of_a_zoo_model_are_its_features_and_fc(batch: ProbeBatch) -> None:
    from edgekd.models.taps import run_tapped

    model = net().eval()
    with torch.no_grad():
        t = run_tapped(model, batch.x)
        assert t.classifier is model.fc and torch.equal(t.features, model.features(batch.x))


def test_named_taps_override_and_a_wrong_name_lists_modules(batch: ProbeBatch) -> None:
    from edgekd.models.taps import NAMED, run_tapped

    teacher = UserCNN()
    setattr(teacher, NAMED, {"features": "features.1", "classifier": "classifier.3"})
    with torch.no_grad():
        t = run_tapped(teacher, batch.x)
    assert t.features.shape[1:] == (8, 28, 28)  # the first ReLU's map, as named
    setattr(teacher, NAMED, {"features": "feature"})
    with pytest.raises(ModelError, match=r"taps\.features: 'feature' is not a module of UserCNN") as err:
        run_tapped(teacher, batch.x, "teacher")
    assert "features" in (err.value.fix or "")


def test_semantic_distance_pooled_variant_by_hand() -> None:
    g_s, g_t = torch.randn(3, 2), torch.randn(3, 4)
    grams_t = [np.outer(b, b) for b in g_t.numpy()]
    pooled_t = [gt.reshape(2, 2, 2, 2).mean(axis=(1, 3)) for gt in grams_t]  # 4x4 -> 2x2 by 2x2 blocks
    expected = sum(
        ((_norm_rows(np.outer(a, a)) - _norm_rows(pt)) ** 2).sum() for a, pt in zip(g_s.numpy(), pooled_t, strict=True)
    ) / (2 * 3)
    assert math.isclose(semantic_distance(g_s, g_t, mismatch="pooled"), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match="mismatch"):
        semantic_distance(g_s, g_t, mismatch="crop")


def test_diswot_compares_every_candidate_with_one_random_teacher(batch: ProbeBatch) -> None:
    teacher = net(14, 8)
    probe = ProbeBatch(batch.x, batch.y, 10)
    score("diswot", net(8, 4), probe, teacher, seed=5)
    first = probe.teacher_stats[(id(teacher), 5)]
    score("diswot", net(14, 16), probe, teacher, seed=5)  # another candidate, another parameter count
    assert probe.teacher_stats[(id(teacher), 5)] is first, "the teacher's statistics are reused, not redrawn"
    fresh = diswot_stats(teacher, ProbeBatch(batch.x, batch.y, 10), 5 + TEACHER_SEED_OFFSET)
    assert torch.equal(fresh[0], first[1]) and torch.equal(fresh[1], first[2])  # independent of the candidate
    # a student identical to the teacher, initialised from the teacher's stream, is at distance 0
    assert diswot_distances(teacher, teacher, probe, seed=5) != (0.0, 0.0)
    g, a = diswot_stats(teacher, probe, 5 + TEACHER_SEED_OFFSET)
    assert semantic_distance(g, first[1]) < 1e-12 and relation_distance(a, first[2]) < 1e-12


def test_closed_form_classifier_gradient_equals_autograd(batch: ProbeBatch) -> None:
    for model in (net(8, 4), zoo.build("mobilenet", {"in_channels": 1, "head": 24})):
        torch.manual_seed(0)
        a = proxies.gaussian_init(copy.deepcopy(model))
        b = copy.deepcopy(a)
        g, _ = proxies._fc_grad_and_features(a, batch)
        ref = proxies.fc_grad_autograd(b, batch)
        assert g.shape == ref.shape == (10, model.fc.in_features)
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def _linear(*weights: list[list[float]]) -> torch.nn.Module:
    """Bias-free linear layers with the given weights, in order (x -> W1 x -> W2 W1 x ...)."""
    layers = [torch.nn.Linear(len(w[0]), len(w), bias=False) for w in weights]
    with torch.no_grad():
        for layer, w in zip(layers, weights, strict=True):
            layer.weight.copy_(torch.tensor(w))
    return torch.nn.Sequential(*layers)


# x = [1, 0], label 1, W = I: logits [1, 0], softmax [s, 1 - s] with s = sigmoid(1), so dCE/dlogits = [s, -s]
# and dCE/dW = [s, -s]^T [1, 0] = [[s, 0], [-s, 0]]: ||dW|| = s * sqrt(2), sum |W * dW| = s
SIGMOID_1 = 1 / (1 + math.exp(-1))
ONE_SAMPLE = ProbeBatch(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), 2)


def test_grad_norm_by_hand_sums_the_norm_of_each_layer() -> None:
    assert score("grad_norm", _linear([[1, 0], [0, 1]]), ONE_SAMPLE) == pytest.approx(SIGMOID_1 * math.sqrt(2))
    # two identity layers: each gets dW = [[s, 0], [-s, 0]] (the first through W2^T = I); the proxy sums the two
    # layer norms (2 s sqrt 2), it is not the norm of all gradients together (2 s)
    two = _linear([[1, 0], [0, 1]], [[1, 0], [0, 1]])
    assert score("grad_norm", two, ONE_SAMPLE) == pytest.approx(2 * SIGMOID_1 * math.sqrt(2))


def test_snip_by_hand_is_the_summed_weight_times_gradient_saliency() -> None:
    assert score("snip", _linear([[1, 0], [0, 1]]), ONE_SAMPLE) == pytest.approx(SIGMOID_1)
    assert score("snip", _linear([[1, 0], [0, 1]], [[1, 0], [0, 1]]), ONE_SAMPLE) == pytest.approx(2 * SIGMOID_1)
    # W = 2 I: logits [2, 0], p = sigmoid(2); dW = [[p, 0], [-p, 0]], |W * dW| sums to 2 p (weights matter)
    assert score("snip", _linear([[2, 0], [0, 2]]), ONE_SAMPLE) == pytest.approx(2 / (1 + math.exp(-2)))


def test_naswot_by_hand_is_the_log_determinant_of_the_code_kernel() -> None:
    # one input unit, three ReLUs with weights (1, -1, 2) and biases (0, 0, -3); x = 1 -> codes (1, 0, 0),
    # x = -1 -> (0, 1, 0): Hamming distance 2 of 3 units, K = [[3, 1], [1, 3]], log det K = log 8
    layer = torch.nn.Linear(1, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0], [-1.0], [2.0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, -3.0]))
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    two = ProbeBatch(torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 0]), 3)
    assert score("naswot", model, two) == pytest.approx(math.log(8))
    same = ProbeBatch(torch.tensor([[1.0], [2.0]]), torch.tensor([0, 0]), 3)  # codes (1, 0, 0) and (1, 0, 1)
    assert score("naswot", model, same) == pytest.approx(math.log(3 * 3 - 2 * 2))  # Hamming 1: K = [[3, 2], [2, 3]]
