"""Zero-cost proxies that score an untrained candidate network on one real batch.

DisWOT (Dong, Li, Wei, CVPR 2023) scores a candidate student against the teacher, both freshly
initialised (conv/linear weights N(0, 1), biases 0, BN gamma 1 beta 0), on one real mini-batch:

* semantic distance: g = dCE/dW_fc (K x C) for each network; per class G_k = g_k g_k^T (C x C),
  row-wise L2-normalised; M_s = sum_k ||G_k^S - G_k^T||_F^2 / (C K). This needs C_S = C_T. When the
  widths differ we compare the K x K class-relation matrices g g^T (row-normalised) instead,
  M_s = ||R^S - R^T||_F^2 / K^2 -- a documented choice: it keeps the class-to-class structure the
  per-class Grams encode and is defined for any widths;
* relation distance: A = features before global pooling (N x D), G = A A^T row-normalised,
  M_r = ||G^T - G^S||_F^2 / N^2;
* score = -(M_s + M_r): higher is better.

Seeds: the candidate's initialisation and the teacher's come from two separate generators seeded from
the score's seed, so for one seed every candidate is compared with the *same* random teacher (and
the teacher's statistics are computed once per batch and seed, not once per candidate). Averaging
over several batches and seeds is the caller's job (the search pass and the benchmarks do it).

Baselines, same interface: params, macs, grad_norm, snip, synflow, naswot, zen. The classifier and the map before
pooling are found by forward hooks (:mod:`edgekd.models.taps`): any classifier works as teacher or candidate.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.models.count import count_macs, count_params
from edgekd.models.taps import run_tapped


@dataclass(eq=False)
class ProbeBatch:
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    #: DisWOT teacher statistics on this batch, per (teacher, seed): computed once, shared by every candidate
    teacher_stats: dict[tuple[int, int], tuple[Any, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )


@torch.no_grad()
def gaussian_init(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """DisWOT/Zen initialisation: conv and linear weights N(0, 1), biases 0, BN gamma 1, beta 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def _fc_grad_and_features(
    model: nn.Module, batch: ProbeBatch, what: str = "model", train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """g = dCE/dW_fc and the flattened pre-pooling features, from one forward pass (BN in training mode, or in
    eval mode with ``train=False``: a trained model's running statistics); the classifier and the feature map are
    found by forward hooks (:mod:`edgekd.models.taps`), so any model works.

    For logits z = W f + b and the mean cross-entropy, dCE/dW = (softmax(z) - onehot(y))^T f / N exactly,
    so no backward pass through the network is needed (``fc_grad_autograd`` is the reference)."""
    model.train(train)
    t = run_tapped(model, batch.x, what)
    err = torch.softmax(t.logits, 1) - F.one_hot(batch.y, t.logits.shape[1]).to(t.logits.dtype)
    return err.T @ t.pooled / len(batch.y), t.features.flatten(1)


def fc_grad_autograd(model: nn.Module, batch: ProbeBatch) -> torch.Tensor:
    """dCE/dW_fc by ``CE(logits, y).backward()``, as the paper writes it (tests compare the closed form with it)."""
    model.train()
    model.zero_grad(set_to_none=True)
    t = run_tapped(model, batch.x)
    F.cross_entropy(t.logits, batch.y).backward()
    assert t.classifier.weight.grad is not None
    return t.classifier.weight.grad.detach().clone()


def _row_normalise(m: torch.Tensor) -> torch.Tensor:
    return F.normalize(m, dim=-1)


#: the teacher's initialisation uses its own stream, apart from the candidate's
TEACHER_SEED_OFFSET = 1 << 20


def diswot_stats(
    model: nn.Module, batch: ProbeBatch, seed: int, what: str = "model"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, A) of a freshly (gaussian, ``seed``) initialised copy: dCE/dW_fc (K x C) and the flattened
    pre-pooling features (N x D). The model passed in is not changed."""
    g = torch.Generator().manual_seed(seed)
    return _fc_grad_and_features(gaussian_init(copy.deepcopy(model), g), batch, what)


def teacher_stats(teacher: nn.Module, batch: ProbeBatch, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's (g, A) for ``seed``: one initialisation per seed whatever the candidate, so every candidate
    of a search is compared with the same random teacher; computed once per batch and seed."""
    key = (id(teacher), seed)
    hit = batch.teacher_stats.get(key)
    if hit is not None and hit[0]() is teacher:
        return hit[1], hit[2]
    g_t, a_t = diswot_stats(teacher, batch, seed + TEACHER_SEED_OFFSET, "teacher")
    batch.teacher_stats[key] = (weakref.ref(teacher), g_t, a_t)
    return g_t, a_t


def diswot_distances(student: nn.Module, teacher: nn.Module, batch: ProbeBatch, seed: int = 0) -> tuple[float, float]:
    """(M_s, M_r) of freshly (gaussian) initialised copies; the models passed in are not changed."""
    g_s, a_s = diswot_stats(student, batch, seed, "student")
    g_t, a_t = teacher_stats(teacher, batch, seed)
    return semantic_distance(g_s, g_t), relation_distance(a_s, a_t)


def _class_grams(g: torch.Tensor) -> torch.Tensor:
    return g[:, :, None] * g[:, None, :]  # K x C x C: G_k = g_k g_k^T


def semantic_distance(g_s: torch.Tensor, g_t: torch.Tensor, mismatch: str = "classes") -> float:
    """M_s from the classifier gradients (K x C each), per the paper when C_S = C_T. When the widths differ:
    ``classes`` (default) compares the K x K class relations g g^T; ``pooled`` average-pools the wider
    network's C x C class Grams down to the narrower width and then applies the paper's formula."""
    k = g_s.shape[0]
    if g_s.shape == g_t.shape or mismatch == "pooled":
        gram_s, gram_t = _class_grams(g_s), _class_grams(g_t)
        c = min(g_s.shape[1], g_t.shape[1])
        if gram_s.shape[-1] != c:
            gram_s = F.adaptive_avg_pool2d(gram_s, c)
        if gram_t.shape[-1] != c:
            gram_t = F.adaptive_avg_pool2d(gram_t, c)
        return float((_row_normalise(gram_s) - _row_normalise(gram_t)).pow(2).sum() / (c * k))
    if mismatch != "classes":
        raise ValueError(f"mismatch must be 'classes' or 'pooled', got {mismatch!r}")
    return float((_row_normalise(g_s @ g_s.T) - _row_normalise(g_t @ g_t.T)).pow(2).sum() / (k * k))


def relation_distance(a_s: torch.Tensor, a_t: torch.Tensor) -> float:
    """M_r from the flattened pre-pooling features (N x D each)."""
    n = a_s.shape[0]
    return float((_row_normalise(a_t @ a_t.T) - _row_normalise(a_s @ a_s.T)).pow(2).sum() / (n * n))


def degenerate(g: torch.Tensor, a: torch.Tensor) -> str | None:
    """Why a network's DisWOT statistics carry no signal, or None: an all-zero classifier gradient, or features that
    are the same for every sample (a dead or constant network). ``F.normalize`` maps a zero row to zero, so such a
    network got M_s = 1 and M_r = 1/N, better than live random networks (~1.4): it must score worst instead."""
    if not bool(torch.isfinite(g).all()) or not bool(torch.isfinite(a).all()):
        return "non-finite gradient or features"
    if float(g.abs().max()) == 0.0:
        return "zero classifier gradient"
    spread = float((a - a[:1]).abs().max())
    if spread <= 1e-6 * max(float(a.abs().max()), 1e-30):
        return "features identical for every sample"
    return None


def diswot(student: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None, seed: int = 0) -> float:
    """-(M_s + M_r); ``-inf`` (the worst score) for a student whose statistics are degenerate (:func:`degenerate`)."""
    if teacher is None:
        raise ValueError("diswot scores a student against a teacher")
    g_s, a_s = diswot_stats(student, batch, seed, "student")
    if degenerate(g_s, a_s):
        return float("-inf")
    g_t, a_t = teacher_stats(teacher, batch, seed)
    return -(semantic_distance(g_s, g_t) + relation_distance(a_s, a_t))


def params(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    return float(count_params(model))


def macs(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    return float(count_macs(model, tuple(batch.x.shape[1:])))


def _weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _ce_grads(model: nn.Module, batch: ProbeBatch) -> list[nn.Parameter]:
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch.x), batch.y).backward()
    return _weights(model)


def grad_norm(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    """Sum over conv/linear layers of ||dCE/dW||_2."""
    ws = _ce_grads(copy.deepcopy(model), batch)
    return float(sum(w.grad.norm() for w in ws if w.grad is not None))


def snip(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    """SNIP (Lee et al. 2019) saliency summed: sum |W * dCE/dW|."""
    ws = _ce_grads(copy.deepcopy(model), batch)
    return float(sum((w.detach() * w.grad).abs().sum() for w in ws if w.grad is not None))


def synflow(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    """SynFlow (Tanaka et al. 2020): parameters made positive, BN off (eval with unit statistics), an input of
    ones, float64; score = sum |theta * dR/dtheta| with R the sum of the output."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m.zero_grad(set_to_none=True)
    m(torch.ones(1, *batch.x.shape[1:], dtype=torch.float64)).sum().backward()
    return float(sum((p.detach() * p.grad).abs().sum() for p in _weights(m) if p.grad is not None))


#: activation modules whose sign pattern NASWOT reads (x > 0: the unit is active)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)


def naswot(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    """NASWOT (Mellor et al. 2021): log|det K_H|, K_H = N_A - Hamming distance of binary activation codes (every
    activation module of :data:`ACTIVATIONS`)."""
    m = copy.deepcopy(model).train()
    codes: list[torch.Tensor] = []
    hooks = [
        r.register_forward_hook(lambda _m, _i, o: codes.append((o.detach() > 0).flatten(1).double()))
        for r in m.modules()
        if isinstance(r, ACTIVATIONS)
    ]
    with torch.no_grad():
        m(batch.x)
    for h in hooks:
        h.remove()
    if not codes:
        raise ModelError(
            f"naswot: {type(model).__name__} calls no activation module ({', '.join(a.__name__ for a in ACTIVATIONS)})"
            " in forward; NASWOT reads their binary codes (F.relu in forward leaves nothing to hook)",
            fix="use another proxy (search.proxy: diswot, snip, ...) or activation modules",
        )
    c = torch.cat(codes, 1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel)[1])


def zen(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None, alpha: float = 0.01) -> float:
    """Zen-score (Lin et al. 2021): log E||f(x) - f(x + alpha eps)|| + sum over BN of log sqrt(mean var),
    gaussian init, Gaussian inputs, BN statistics of the batch."""
    m = gaussian_init(copy.deepcopy(model)).train()
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 1.0  # running_var becomes the batch's
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch.x.shape, generator=g)
    eps = torch.randn(batch.x.shape, generator=g)
    with torch.no_grad():
        f, f_eps = run_tapped(m, x, "candidate").features, run_tapped(m, x + alpha * eps, "candidate").features
        delta = (f - f_eps).abs().sum((1, 2, 3)).mean()
        # a BN whose input is all zero (a branch fed by a zero op) has zero variance: log 0 = -inf would rank
        # the whole network last whatever its other layers; Zen's sum leaves such layers out
        log_bn = sum(
            torch.log(torch.sqrt(v))
            for bn in m.modules()
            if isinstance(bn, nn.BatchNorm2d) and (v := bn.running_var.mean()) > 0
        )
    return float(torch.log(delta) + log_bn)


def teacher_kl(model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None) -> float:
    """-KL(teacher || candidate) of the class distributions on the batch, the candidate as built (for a space whose
    candidates inherit the teacher's trained weights, e.g. text-shrink: how much of the teacher a candidate keeps
    before any training). Needs the teacher."""
    if teacher is None:
        raise ValueError("teacher_kl compares a candidate with the teacher: give the teacher")
    model.eval()
    teacher.eval()
    with torch.no_grad():
        t = F.log_softmax(teacher(batch.x).float(), 1)
        s = F.log_softmax(model(batch.x).float(), 1)
    return -float(F.kl_div(s, t, reduction="batchmean", log_target=True))


Proxy = Callable[..., float]
#: the proxies that take token inputs (the others feed images: noise, all-ones inputs, pre-pooling maps)
TEXT_PROXIES = ("teacher_kl", "params", "macs", "grad_norm", "snip")
PROXIES: dict[str, Proxy] = {
    "diswot": diswot,
    "params": params,
    "macs": macs,
    "grad_norm": grad_norm,
    "snip": snip,
    "synflow": synflow,
    "naswot": naswot,
    "zen": zen,
    "teacher_kl": teacher_kl,
}


def score(name: str, model: nn.Module, batch: ProbeBatch, teacher: nn.Module | None = None, seed: int = 0) -> float:
    """Score ``model`` (its weights as given; DisWOT and Zen re-initialise copies) with proxy ``name``; the seed
    fixes every random draw inside, and the global random state is left as it was. :func:`build_seeded` builds
    candidates whose default initialisation is fixed by a seed too."""
    if name == "diswot":
        return diswot(model, batch, teacher, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PROXIES[name](model, batch, teacher)


def build_seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make()`` with the global generator seeded for the call (and restored after it): a candidate's default
    initialisation depends on ``seed`` only, not on what ran before (the baselines score those weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
