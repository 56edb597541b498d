"""Distillation loss terms. Each is a small module registered by name; an objective is a weighted sum.

A term sees a :class:`Batch`: student/teacher logits, labels, and the feature maps of the layer
pairs it asked for (captured by forward hooks). Terms that need trainable adapters (FitNets'
regressor) create them on first use and expose them through ``parameters()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.train.pairing import Projections


def _detached(x: Any) -> Any:
    """``x`` (a tensor, or a module's tuple of outputs such as attention's) cut from the autograd graph."""
    if isinstance(x, torch.Tensor | Projections):
        return x.detach()
    if isinstance(x, tuple | list):
        return type(x)(_detached(v) for v in x)
    return x


@dataclass
class Batch:
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    labels: torch.Tensor
    #: (student layer, teacher layer) -> (student features, teacher features)
    features: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    #: classifier weights (K x C) of student and teacher, for the DisWOT semantic term
    student_fc: torch.Tensor | None = None
    teacher_fc: torch.Tensor | None = None
    #: token models: B x L, true at real tokens (padding never counts in a token-level term)
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """The teacher is a fixed target: no term sends gradient into it, whatever graph its tensors carry."""
        self.teacher_logits = self.teacher_logits.detach()
        self.features = {k: (s, _detached(t)) for k, (s, t) in self.features.items()}
        if self.teacher_fc is not None:
            self.teacher_fc = self.teacher_fc.detach()


class Term(nn.Module):
    """A loss term. ``pairs`` lists the (student, teacher) layers whose outputs it needs.

    A term with trainable adapters whose shapes follow the features (``builds = True``) creates them in
    :meth:`build` from one probe pass's outputs, before the optimizer is made."""

    needs_fc = False
    builds = False

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.pairs = pairs or []

    def build(self, outputs: dict[tuple[str, str], tuple[Any, Any]]) -> None:
        """Create the adapters from the paired (student, teacher) outputs of one probe pass."""

    def forward(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------------------- logit terms


class CE(Term):
    def forward(self, b: Batch) -> torch.Tensor:
        return F.cross_entropy(b.student_logits, b.labels)


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t/T) || softmax(s/T)) * T^2."""
    t = temperature
    return (
        F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean", log_target=True)
        * t
        * t
    )


class KD(Term):
    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, b: Batch) -> torch.Tensor:
        return kd_kl(b.student_logits, b.teacher_logits, self.temperature)


class DKD(Term):
    """Decoupled KD (Zhao et al. 2022): alpha * TCKD + beta * NCKD, with a linear warm-up of the weight.

    ``warmup_steps`` counts optimisation steps (training forward passes), not epochs: the paper warms up over its
    first 20 epochs, i.e. ``warmup_steps = 20 * steps per epoch`` for the same schedule."""

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup_steps: int = 0) -> None:
        super().__init__()
        self.alpha, self.beta, self.temperature, self.warmup_steps = alpha, beta, temperature, warmup_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, b: Batch) -> torch.Tensor:
        t = self.temperature
        gt = F.one_hot(b.labels, b.student_logits.shape[1]).bool()
        p_s, p_t = F.softmax(b.student_logits / t, 1), F.softmax(b.teacher_logits / t, 1)
        # binary (target vs rest) distributions
        bs = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1).clamp_min(1e-8)
        bt = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1).clamp_min(1e-8)
        tckd = (bt * (bt.log() - bs.log())).sum(1).mean() * t * t
        # distributions among non-target classes (target logit masked out)
        masked_s = b.student_logits / t - 1000.0 * gt
        masked_t = b.teacher_logits / t - 1000.0 * gt
        nckd = (
            F.kl_div(F.log_softmax(masked_s, 1), F.log_softmax(masked_t, 1), reduction="batchmean", log_target=True)
            * t
            * t
        )
        if self.training:
            self.step += 1
        ramp = min(1.0, float(self.step) / self.warmup_steps) if self.warmup_steps else 1.0
        return ramp * (self.alpha * tckd + self.beta * nckd)


def _pearson(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + 1e-8)


class DIST(Term):
    """DIST (Huang et al. 2022): 1 - Pearson correlation between class distributions, inter (per sample)
    and intra (per class across the batch)."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.beta, self.gamma, self.temperature = beta, gamma, temperature

    def forward(self, b: Batch) -> torch.Tensor:
        t = self.temperature
        p_s, p_t = F.softmax(b.student_logits / t, 1), F.softmax(b.teacher_logits / t, 1)
        inter = (1 - _pearson(p_s, p_t, 1)).mean()
        intra = (1 - _pearson(p_s, p_t, 0)).mean()
        return t * t * (self.beta * inter + self.gamma * intra)


class Sinkhorn(Term):
    """Entropy-regularised optimal transport (Sinkhorn) distance between the softened class distributions, with a
    0/1 ground cost between classes (0 for the same class, 1 for any other): every class is as far from every other,
    so the term compares the distributions' mass class by class, smoothed by the entropic plan."""

    def __init__(self, temperature: float = 4.0, epsilon: float = 0.1, iterations: int = 20) -> None:
        super().__init__()
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, iterations

    def forward(self, b: Batch) -> torch.Tensor:
        t = self.temperature
        p = F.softmax(b.student_logits / t, 1)
        q = F.softmax(b.teacher_logits / t, 1).detach()
        k = p.shape[1]
        cost = 1.0 - torch.eye(k, device=p.device)  # 0 on the diagonal, 1 elsewhere
        kernel = torch.exp(-cost / self.epsilon)
        u = torch.ones_like(p) / k
        for _ in range(self.iterations):
            v = q / (u @ kernel).clamp_min(1e-12)
            u = p / (v @ kernel.T).clamp_min(1e-12)
        plan = u[:, :, None] * kernel[None] * v[:, None, :]
        return (plan * cost[None]).sum((1, 2)).mean() * t * t


# --------------------------------------------------------------------------------------- feature terms


class FitNet(Term):
    """FitNets hint (Romero et al. 2015): MSE between the teacher's features and a regressor of the
    student's (1x1 conv + BN when channels differ; the student map is resized when sizes differ)."""

    builds = True

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.regressors = nn.ModuleDict()

    def regressor(self, key: str, c_s: int, c_t: int) -> nn.Module:
        if key not in self.regressors:
            self.regressors[key] = (
                nn.Identity() if c_s == c_t else nn.Sequential(nn.Conv2d(c_s, c_t, 1, bias=False), nn.BatchNorm2d(c_t))
            )
        return self.regressors[key]

    def build(self, outputs: dict[tuple[str, str], tuple[Any, Any]]) -> None:
        """Create the regressors from one probe pass's features (so the optimizer sees them)."""
        for (s, t), (f_s, f_t) in outputs.items():
            self.regressor(_key(s, t), f_s.shape[1], f_t.shape[1])

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (f_s, f_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            out = self.regressor(_key(s, t), f_s.shape[1], f_t.shape[1])(f_s)
            if out.shape[-2:] != f_t.shape[-2:]:
                out = F.interpolate(out, size=f_t.shape[-2:], mode="bilinear", align_corners=False)
            total = total + F.mse_loss(out, f_t)
        return total / max(1, len(self.pairs))


def _key(s: str, t: str) -> str:
    return f"{s}->{t}".replace(".", "_")


def attention_map(f: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Zagoruyko & Komodakis 2017: spatial map sum_c |F_c|^p, flattened and L2-normalised."""
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


class AT(Term):
    def __init__(self, pairs: list[tuple[str, str]], p: int = 2) -> None:
        super().__init__(pairs)
        self.p = p

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (f_s, f_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            if f_s.shape[-2:] != f_t.shape[-2:]:
                f_s = F.interpolate(f_s, size=f_t.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (attention_map(f_s, self.p) - attention_map(f_t, self.p)).pow(2).mean()
        return total / max(1, len(self.pairs))


def batch_gram(f: torch.Tensor) -> torch.Tensor:
    """Row-normalised N x N similarity of flattened samples (Tung & Mori 2019)."""
    flat = f.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


class SP(Term):
    """Similarity-preserving KD: ||G_s - G_t||_F^2 / N^2 of row-normalised batch Gram matrices."""

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (f_s, f_t) in b.features.items():
            if (s, t) in self.pairs:
                n = f_s.shape[0]
                total = total + (batch_gram(f_s) - batch_gram(f_t)).pow(2).sum() / (n * n)
        return total / max(1, len(self.pairs))


class RKD(Term):
    """Relational KD (Park et al. 2019) on globally pooled embeddings: distance (Huber) + angle (Huber)."""

    def __init__(self, pairs: list[tuple[str, str]], distance: float = 25.0, angle: float = 50.0) -> None:
        super().__init__(pairs)
        self.w_distance, self.w_angle = distance, angle

    @staticmethod
    def _dist(e: torch.Tensor) -> torch.Tensor:
        """Pairwise distances divided by their mean over distinct pairs; the diagonal is exactly 0 (``cdist`` leaves
        rounding noise there, which would leak into the mean and the loss)."""
        off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
        d = torch.cdist(e, e) * off
        pos = d[off & (d > 0)]
        return d / (pos.mean() if pos.numel() else d.new_ones(()))

    @staticmethod
    def _angle(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (f_s, f_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            e_s = f_s.flatten(2).mean(2) if f_s.ndim > 2 else f_s
            e_t = f_t.flatten(2).mean(2) if f_t.ndim > 2 else f_t
            with torch.no_grad():
                d_t, a_t = self._dist(e_t), self._angle(e_t)
            total = total + self.w_distance * F.smooth_l1_loss(self._dist(e_s), d_t)
            total = total + self.w_angle * F.smooth_l1_loss(self._angle(e_s), a_t)
        return total / max(1, len(self.pairs))


# ------------------------------------------------------------------------------------- DisWOT distillers


def class_relation(logits: torch.Tensor, labels: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """DisWOT's semantic signal as a K x K matrix: g = dCE/dW_fc = (softmax(z) - onehot(y))^T f / N (K x C),
    class-wise channel Gram g g^T, row-normalised. K x K, so students and teachers of any width compare."""
    g = (F.softmax(logits, 1) - F.one_hot(labels, logits.shape[1]).float()).T @ pooled / len(labels)
    return F.normalize(g @ g.T, dim=1)


class DisWOTSemantic(Term):
    """Distance between the student's and teacher's class relation matrices (see :func:`class_relation`),
    computed from the last feature maps before pooling (the pair names them)."""

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (f_s, f_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            g_s = class_relation(b.student_logits, b.labels, f_s.flatten(2).mean(2))
            with torch.no_grad():
                g_t = class_relation(b.teacher_logits, b.labels, f_t.flatten(2).mean(2))
            total = total + (g_s - g_t).pow(2).sum() / g_s.numel()
        return total / max(1, len(self.pairs))


class DisWOTRelation(SP):
    """DisWOT's relation distance ||G_t - G_s||_F^2 / N^2 of row-normalised sample Gram matrices: by
    definition the similarity-preserving measure, kept under its paper's name for configs."""


# --------------------------------------------------------------------------------------------- MiniLM


def _kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of each row (last dimension) of two tensors of distributions."""
    return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(-1)


def minilm_loss(attn_s: torch.Tensor, attn_t: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
    """MiniLM (Wang et al. 2020), last layer: KL of teacher vs student attention distributions
    (B x H x L x L, rows summing to 1) + KL of value relations softmax(V V^T / sqrt(d_head))."""

    def relation(v: torch.Tensor) -> torch.Tensor:
        return F.softmax(v @ v.transpose(-1, -2) / math.sqrt(v.shape[-1]), -1)

    return _kl_rows(attn_t, attn_s).mean() + _kl_rows(relation(v_t), relation(v_s)).mean()


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """B x L x W -> B x heads x L x W/heads."""
    b, length, width = x.shape
    if width % heads:
        raise ValueError(f"a width of {width} does not split into {heads} relation heads")
    return x.view(b, length, heads, width // heads).transpose(1, 2)


def relation_log_probs(a: torch.Tensor, b: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """log softmax(A_h B_h^T / sqrt(d_r)) per relation head h (B x heads x L x L), padded keys left out: with A = Q
    and B = K and as many relation heads as attention heads, these are the model's own attention distributions."""
    a_h, b_h = split_heads(a, heads), split_heads(b, heads)
    scores = a_h @ b_h.transpose(-1, -2) / math.sqrt(a_h.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores.float(), -1)


def masked_relation_kl(t: torch.Tensor, s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over heads and real query tokens of KL(teacher row || student row); both are log probabilities whose
    padded keys carry (numerically) zero probability."""
    kl = (t.exp() * (t - s)).sum(-1)  # B x heads x L
    if mask is None:
        return kl.mean()
    rows = mask[:, None, :].expand_as(kl)
    return kl[rows].mean() if rows.any() else kl.sum() * 0


def minilm_relations(s: Projections, t: Projections, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """MiniLM on Hugging Face attention: the attention distributions (Q-K) and value relations (V-V) of teacher
    and student, in ``heads`` relation heads (MiniLMv2's device, so that head counts and widths may differ)."""
    assert s.q is not None and s.k is not None and s.v is not None, "the student's projections were not captured"
    assert t.q is not None and t.k is not None and t.v is not None, "the teacher's projections were not captured"
    attention = masked_relation_kl(
        relation_log_probs(t.q, t.k, heads, mask), relation_log_probs(s.q, s.k, heads, mask), mask
    )
    values = masked_relation_kl(
        relation_log_probs(t.v, t.v, heads, mask), relation_log_probs(s.v, s.v, heads, mask), mask
    )
    return attention + values


class MiniLM(Term):
    """Self-attention distillation (MiniLM, Wang et al. 2020) of paired attention modules.

    Hugging Face attention modules (any with ``query``/``key``/``value``, ``q_lin``/... or ``q_proj``/...
    projections): KL of the attention distributions softmax(QK^T/sqrt(d)) and of the value relations
    softmax(VV^T/sqrt(d)), in ``relation_heads`` heads (0: the teacher's attention heads; set it when the student
    has other heads, to a number dividing both widths, as MiniLMv2 does), padded tokens left out. Modules that
    return ``(output, attention_probs, values)`` (B x H x L x L and B x H x L x d) are compared as they are."""

    def __init__(self, pairs: list[tuple[str, str]], relation_heads: int = 0) -> None:
        super().__init__(pairs)
        if relation_heads < 0 or relation_heads != int(relation_heads):
            raise ValueError(f"relation_heads: a whole number >= 0 (0: the teacher's heads), got {relation_heads}")
        self.relation_heads = int(relation_heads)

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (out_s, out_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            if isinstance(out_s, Projections) and isinstance(out_t, Projections):
                heads = self.relation_heads or out_t.heads
                total = total + minilm_relations(out_s, out_t, heads, b.mask)
            else:
                total = total + minilm_loss(out_s[1], out_t[1], out_s[2], out_t[2])  # type: ignore[index]
        return total / max(1, len(self.pairs))


# ------------------------------------------------------------------------------------ token-level terms


def _tokens(out: Any, where: str) -> torch.Tensor:
    """The B x L x W hidden states a layer returned (the first element of a tuple)."""
    h = out[0] if isinstance(out, tuple | list) else out
    if not isinstance(h, torch.Tensor) or h.ndim != 3:
        shape = list(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ValueError(f"hidden: {where} returned {shape}, not hidden states [batch, tokens, width]")
    return h


class Hidden(Term):
    """TinyBERT's hidden-state and embedding distillation (Jiao et al. 2020): MSE between the teacher's token states
    and a learned projection of the student's (a linear map when the widths differ), over real tokens only. Pair
    transformer layers (``...encoder.layer.N``) or the embeddings."""

    builds = True

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.projections = nn.ModuleDict()

    def projection(self, key: str, w_s: int, w_t: int) -> nn.Module:
        if key not in self.projections:
            self.projections[key] = nn.Identity() if w_s == w_t else nn.Linear(w_s, w_t, bias=False)
        return self.projections[key]

    def build(self, outputs: dict[tuple[str, str], tuple[Any, Any]]) -> None:
        for (s, t), (o_s, o_t) in outputs.items():
            self.projection(_key(s, t), _tokens(o_s, s).shape[-1], _tokens(o_t, t).shape[-1])

    def forward(self, b: Batch) -> torch.Tensor:
        total = b.student_logits.new_zeros(())
        for (s, t), (o_s, o_t) in b.features.items():
            if (s, t) not in self.pairs:
                continue
            h_s, h_t = _tokens(o_s, s), _tokens(o_t, t)
            err = (self.projection(_key(s, t), h_s.shape[-1], h_t.shape[-1])(h_s) - h_t).pow(2).mean(-1)
            total = total + (err[b.mask] if b.mask is not None else err).mean()
        return total / max(1, len(self.pairs))


# ---------------------------------------------------------------------------------------------- registry

#: name -> (builder from settings, needs layer pairs)
TERMS: dict[str, tuple[Callable[..., Term], bool]] = {
    "ce": (CE, False),
    "kd": (KD, False),
    "dkd": (DKD, False),
    "dist": (DIST, False),
    "sinkhorn": (Sinkhorn, False),
    "fitnet": (FitNet, True),
    "at": (AT, True),
    "sp": (SP, True),
    "rkd": (RKD, True),
    "diswot_semantic": (DisWOTSemantic, True),
    "diswot_relation": (DisWOTRelation, True),
    "minilm": (MiniLM, True),
    "hidden": (Hidden, True),
}


def build_term(name: str, settings: dict[str, Any]) -> Term:
    """Instantiate a registered term; ``pairs`` (list of {student, teacher}) is turned into tuples."""
    builder, needs_pairs = TERMS[name]
    kwargs = dict(settings)
    if needs_pairs:
        kwargs["pairs"] = [(p["student"], p["teacher"]) for p in kwargs.get("pairs", [])]
    return builder(**kwargs)
