"""Quantization-aware training with the teacher (quantized distillation, Polino et al. 2018), simulating the INT8
file the target's runtime deploys.

:func:`simulate` traces the student with torch.fx and rebuilds it as the runtime's quantizer sees it (the
:class:`~edgekd.backends.base.QuantScheme` of the target's backend):

- every Conv, with the BatchNorm its output feeds (found by data flow, folded with frozen statistics), and every
  Linear gets symmetric int8 weights (per output channel or per tensor) and, where the runtime has them, int32
  biases at scale ``input_scale * weight_scale``;
- every tensor entering or leaving an operator the runtime quantizes (Conv, Gemm, MatMul, Add, Mul, Concat,
  pools, Flatten/Reshape, BatchNorm, Relu/Clip) is fake-quantized once, on the scheme's activation grid; a
  Relu/Clip that is its producer's only consumer is merged into it (only its output is quantized), as ONNX
  Runtime and TFLite fuse them; operators the runtime leaves in float stay float.

:func:`calibrate` sets the ranges as the deployed file's calibration does (min/max, or ONNX Runtime's own
histogram collector for entropy/percentile); training then tracks them by exponential moving average.
:func:`snap_weights` writes the fake-quantized weights back into the plain student (conv weights such that
conv+BN folds onto the int8 grid), so the exported and re-quantized file holds exactly the weights QAT trained;
its activation ranges are recalibrated on the same samples, which :func:`calibrate` reproduces.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgekd.backends.base import QuantScheme, load_function
from edgekd.core.device import module_device
from edgekd.core.errors import ModelError

#: ONNX Runtime's default ``uint8`` scheme (x86), used where no scheme is given
DEFAULT_SCHEME = QuantScheme("ONNX Runtime QDQ", 0, 255, False, True, True, "minmax")

_SHARING_FUNCTIONS = {F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, torch.flatten, torch.reshape}
_SHARING_METHODS = {"flatten", "view", "reshape"}
_SHARING_MODULES: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)
_QUANT_FUNCTIONS = {
    operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul, torch.cat, torch.concat,
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, F.adaptive_avg_pool2d, F.avg_pool2d,
    F.max_pool2d, torch.matmul, operator.matmul,
}  # fmt: skip
_ACT_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.hardtanh, torch.clamp, torch.clip}
_QUANT_METHODS = {"add", "mul", "flatten", "view", "reshape", "squeeze", "unsqueeze", "matmul"}
_ACT_METHODS = {"relu", "clamp", "clip"}
_QUANT_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten,
)  # fmt: skip
_ACT_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
_NOP_MODULES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout2d)


class ActFakeQuant(nn.Module):
    """Per-tensor fake quantization on ``[qmin, qmax]`` (symmetric, or with a zero point), its range from
    calibration and then an exponential moving average while training."""

    def __init__(self, qmin: int = 0, qmax: int = 255, symmetric: bool = False, momentum: float = 0.01) -> None:
        super().__init__()
        self.qmin, self.qmax, self.symmetric, self.momentum = qmin, qmax, symmetric, momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("initialised", torch.tensor(False))
        self.observe_only = False
        self.recorded: list[np.ndarray] | None = None  # per-sample values, for histogram calibration
        self.shares: ActFakeQuant | None = None  # requantize with this one's scale and zero point (its input's)

    def share(self, other: ActFakeQuant) -> None:
        object.__setattr__(self, "shares", other)  # not a submodule: it is another node's

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        if self.recorded is not None:
            self.recorded.extend(x.detach().float().cpu().numpy().copy())
        lo, hi = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
        if not bool(self.initialised):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.initialised.fill_(True)
        elif self.observe_only:  # calibration: min/max over every batch
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) as the runtimes compute them from the range (which always includes 0)."""
        if self.shares is not None:
            return self.shares.qparams()
        lo, hi = self.lo.clamp(max=0.0), self.hi.clamp(min=0.0)
        if self.symmetric:
            scale = (torch.maximum(-lo, hi) / ((self.qmax - self.qmin) / 2)).clamp(min=1e-8)
            return scale, torch.zeros((), dtype=torch.int32, device=scale.device)
        scale = ((hi - lo) / (self.qmax - self.qmin)).clamp(min=1e-8)
        zero = torch.clamp(torch.round(self.qmin - lo / scale), self.qmin, self.qmax).to(torch.int32)
        return scale, zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shares is not None:
            if self.observe_only:
                return x
            scale, zero = self.qparams()
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, self.qmin, self.qmax)
        if self.training or self.observe_only:
            self._observe(x)
        if self.observe_only:
            return x
        scale, zero = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, self.qmin, self.qmax)


def fake_quant_weight(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Symmetric int8 fake quantization on [-127, 127], scale max|w| / 127 per output channel (or per tensor)."""
    scale = _weight_scale(w, per_channel)
    if not per_channel:
        zero = torch.zeros((), dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_tensor_affine(w, scale[0], zero, -127, 127)
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def _weight_scale(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    if not per_channel:
        return (w.detach().abs().max() / 127.0).clamp(min=1e-12).expand(w.shape[0])
    return (w.detach().abs().reshape(w.shape[0], -1).amax(1) / 127.0).clamp(min=1e-12)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _Weighted(nn.Module):
    """Shared by the conv and linear twins: fake-quantized weights, int32 bias at the input's scale."""

    per_channel: bool
    bias_int32: bool
    input_quant: ActFakeQuant | None

    def _bias(self, b: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor | None:
        q = self.input_quant
        if b is None or not self.bias_int32 or q is None or q.observe_only or not bool(q.initialised):
            return b
        step = q.qparams()[0] * _weight_scale(w, self.per_channel)
        return _RoundSTE.apply(b / step) * step  # type: ignore[no-any-return]


class QConvBN(_Weighted):
    """Conv (+ the BatchNorm it feeds, folded with frozen statistics) with fake-quantized weights and bias."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, per_channel: bool, bias_int32: bool) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self.per_channel, self.bias_int32 = per_channel, bias_int32
        object.__setattr__(self, "input_quant", None)  # not a submodule: it is the graph's own node

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.conv.weight, self.conv.bias
        if self.bn is None:
            return w, b
        k, shift = _bn_factor(self.bn)
        bias = shift + (b * k if b is not None else 0)
        return w * k.reshape(-1, *([1] * (w.dim() - 1))), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.folded()
        qw = fake_quant_weight(w, self.per_channel)
        return self.conv._conv_forward(x, qw, self._bias(b, w))  # type: ignore[operator]


class QLinear(_Weighted):
    def __init__(self, linear: nn.Linear, per_channel: bool, bias_int32: bool) -> None:
        super().__init__()
        self.linear = linear
        self.per_channel, self.bias_int32 = per_channel, bias_int32
        object.__setattr__(self, "input_quant", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight
        return F.linear(x, fake_quant_weight(w, self.per_channel), self._bias(self.linear.bias, w))


def _bn_factor(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_var is not None and bn.running_mean is not None
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
    k = gamma / torch.sqrt(bn.running_var + bn.eps)
    return k, beta - bn.running_mean * k


@dataclass
class Simulation:
    """The student as its runtime computes it at INT8. ``module`` trains and evaluates like the student and
    shares its parameters; ``twins`` maps each Conv/Linear path to its fake-quantized twin."""

    module: fx.GraphModule
    twins: dict[str, _Weighted]
    quantizers: dict[str, ActFakeQuant]  # the graph node whose output each one quantizes
    scheme: QuantScheme
    folded: dict[str, str] = field(default_factory=dict)  # conv path -> the BatchNorm folded into it
    float_ops: list[str] = field(default_factory=list)  # operators left in float (the runtime does not quantize)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:
        raise ModelError(
            f"quantize.method qat: the student cannot be traced with torch.fx ({type(exc).__name__}: {exc}); QAT "
            "needs its graph to place the quantizers where the runtime does",
            fix="use quantize.method: ptq, or give the student a forward without data-dependent Python control flow",
        ) from exc


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """q: an operator the runtime quantizes; act: a Relu/Clip (mergeable); float; io (input/output); other."""
    if node.op == "placeholder":
        return "io"
    if node.op == "output":
        return "out"
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        if isinstance(m, _ACT_MODULES):
            return "act"
        return "q" if isinstance(m, (_Weighted, *_QUANT_MODULES)) else "float"
    if node.op == "call_function":
        if node.target in _ACT_FUNCTIONS:
            return "act"
        return "q" if node.target in _QUANT_FUNCTIONS else "float"
    if node.op == "call_method":
        if node.target in _ACT_METHODS:
            return "act"
        return "q" if node.target in _QUANT_METHODS else "float"
    return "other"  # get_attr


def _shares_input(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A pooling or reshaping node (whose output may take its input's quantization)."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), _SHARING_MODULES)
    if node.op == "call_function":
        return node.target in _SHARING_FUNCTIONS
    return node.op == "call_method" and node.target in _SHARING_METHODS


def _is_tensor(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape") and getattr(meta, "dtype", None) in (torch.float32, None)


def simulate(
    model: nn.Module, example: torch.Tensor, scheme: QuantScheme = DEFAULT_SCHEME, skip: set[str] | None = None
) -> Simulation:
    """Trace ``model`` and build its INT8 simulation under ``scheme``. Layers in ``skip`` (module paths) stay float.

    ``example``: an input batch (shapes tell tensors from sizes and flags in the graph).
    """
    skip = skip or set()
    gm = _trace(model)
    graph = gm.graph
    for node in list(graph.nodes):  # Identity / Dropout vanish at export: not operators
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _NOP_MODULES):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    gm.recompile()
    was = model.training
    model.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example[:1])
    model.train(was)

    twins: dict[str, _Weighted] = {}
    folded: dict[str, str] = {}
    for node in list(graph.nodes):
        if node.op != "call_module" or str(node.target) in skip:
            continue
        path = str(node.target)
        m = gm.get_submodule(path)
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            bn_node = next(iter(node.users)) if len(node.users) == 1 else None
            bn = gm.get_submodule(str(bn_node.target)) if bn_node is not None and bn_node.op == "call_module" else None
            if isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and bn.num_features == m.out_channels:
                assert bn_node is not None
                bn_node.replace_all_uses_with(node)
                graph.erase_node(bn_node)
                folded[path] = str(bn_node.target)
            else:
                bn = None
            twin: _Weighted = QConvBN(m, bn, scheme.per_channel, scheme.bias_int32)  # type: ignore[arg-type]
        elif isinstance(m, nn.Linear):
            twin = QLinear(m, scheme.per_channel, scheme.bias_int32)
        else:
            continue
        name = f"edgekd_qat_{len(twins)}"
        gm.add_submodule(name, twin)
        node.target = name
        twins[path] = twin

    kinds = {node: _kind(gm, node) for node in graph.nodes}
    quantizing = {"q", "act"}

    def merged(node: fx.Node) -> bool:  # its only consumer is a Relu/Clip: that one's output carries the range
        users = list(node.users)
        return kinds[node] == "q" and len(users) == 1 and kinds[users[0]] == "act"

    quantizers: dict[str, ActFakeQuant] = {}
    for node in list(graph.nodes):
        if kinds[node] in ("out", "other") or not _is_tensor(node) or merged(node):
            continue
        if kinds[node] not in quantizing and not any(kinds[u] in quantizing for u in node.users):
            continue
        q = ActFakeQuant(scheme.act_qmin, scheme.act_qmax, scheme.act_symmetric)
        name = f"edgekd_act_{len(quantizers)}"
        gm.add_submodule(name, q)
        with graph.inserting_after(node):
            qnode = graph.call_module(name, (node,))
        node.replace_all_uses_with(qnode, delete_user_cb=lambda u, q=qnode: u is not q)
        quantizers[node.name] = q
    for node in graph.nodes:  # pooling/reshaping outputs on their input's grid, where the runtime does that
        if scheme.pools_share_input_range and node.name in quantizers and _shares_input(gm, node):
            src = node.args[0]
            if isinstance(src, fx.Node) and src.op == "call_module" and str(src.target).startswith("edgekd_act_"):
                quantizers[node.name].share(gm.get_submodule(str(src.target)))  # type: ignore[arg-type]
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _Weighted):
            arg = node.args[0]
            if isinstance(arg, fx.Node) and arg.op == "call_module" and str(arg.target).startswith("edgekd_act_"):
                object.__setattr__(gm.get_submodule(str(node.target)), "input_quant", gm.get_submodule(str(arg.target)))
    float_ops = [n.name for n in graph.nodes if kinds.get(n) == "float"]
    graph.lint()
    gm.recompile()
    gm.train(was)
    return Simulation(gm, twins, quantizers, scheme, folded, float_ops)


@torch.no_grad()
def calibrate(sim: Simulation, x: torch.Tensor, batch_size: int = 128) -> None:
    """Set every activation range as the deployed file's calibration finds it on ``x``: min/max over the
    samples, or the scheme's own range finder (ONNX Runtime's entropy / percentile histograms, PT2E's histogram
    observer) over the same values."""
    finder = load_function(sim.scheme.range_finder) if sim.scheme.range_finder else None
    histogram = finder is not None
    own = {k: q for k, q in sim.quantizers.items() if q.shares is None}
    for q in sim.quantizers.values():
        q.observe_only = True
        q.initialised.fill_(False)
        q.recorded = [] if histogram and q.shares is None else None
    was = sim.module.training
    sim.module.eval()
    try:
        dev = module_device(sim.module)
        for i in range(0, len(x), batch_size):
            sim.module(x[i : i + batch_size].to(dev))
        if histogram:
            ranges = finder({k: q.recorded or [] for k, q in own.items()}, sim.scheme.calibration)
            for k, q in own.items():
                q.lo.fill_(min(ranges[k][0], 0.0))
                q.hi.fill_(max(ranges[k][1], 0.0))
    finally:
        sim.module.train(was)
        for q in sim.quantizers.values():
            q.observe_only = False
            q.recorded = None


@torch.no_grad()
def snap_weights(sim: Simulation) -> None:
    """Write the fake-quantized weights back: folded conv weights on the int8 grid (divided by BN's factor so that
    export's conv+BN folding lands on it), linear weights on the grid. A channel whose BatchNorm factor is 0 (gamma
    0) has no effect on the output whatever its weights: they are left as they are."""
    for twin in sim.twins.values():
        if isinstance(twin, QConvBN):
            w, _ = twin.folded()
            q = fake_quant_weight(w, twin.per_channel)
            if twin.bn is not None:
                k, _ = _bn_factor(twin.bn)
                k = k.reshape(-1, *([1] * (w.dim() - 1)))
                safe = torch.where(k == 0, torch.ones_like(k), k)
                q = torch.where(k == 0, twin.conv.weight, q / safe)
            twin.conv.weight.copy_(q)
        elif isinstance(twin, QLinear):
            twin.linear.weight.copy_(fake_quant_weight(twin.linear.weight, twin.per_channel))


@torch.no_grad()
def deployed_agreement(sim_logits: torch.Tensor, deployed_logits: torch.Tensor) -> dict[str, float]:
    """How closely the simulation predicted the deployed file: max |logit difference|, and top-1 agreement (%)."""
    diff = (sim_logits - deployed_logits).abs()
    return {
        "max_abs_logit_diff": round(float(diff.max()), 5),
        "mean_abs_logit_diff": round(float(diff.mean()), 5),
        "top1_agreement": round(float((sim_logits.argmax(1) == deployed_logits.argmax(1)).float().mean() * 100), 3),
        "samples": len(sim_logits),
    }
