"""Per-layer precision fallback for static INT8 (ONNX Runtime QDQ).

Sensitivity of a layer = the validation accuracy gained when only that layer is left in fp32 (everything else
INT8). Layers are returned to fp32 in order of sensitivity until the accuracy guard holds. Latency fallback
(``per_layer``, run only where this host is the target): a layer whose INT8 form makes the model measurably
slower is kept in fp32.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.backends.onnx.runtime import OrtModel

QUANTIZABLE = ("Conv", "Gemm", "MatMul")


@dataclass
class Layer:
    node: str  # ONNX node name
    op: str
    module: str | None  # PyTorch module path, when matched
    precision: str = "int8"
    reason: str = ""
    sensitivity: float | None = None  # val accuracy points gained when this layer alone stays fp32
    latency_gain: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FallbackResult:
    layers: list[Layer]
    accuracy: float
    int8_accuracy_all: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def excluded(self) -> list[str]:
        return [layer.node for layer in self.layers if layer.precision != "int8"]


def onnx_layers(path: Path) -> list[tuple[str, str]]:
    """(node name, op type) of the quantizable nodes, in graph order."""
    model = onnx.load(str(path), load_external_data=False)
    return [(n.name, n.op_type) for n in model.graph.node if n.op_type in QUANTIZABLE]


def execution_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Module paths of the Conv2d/Linear layers in the order a forward pass calls them (= exported node order)."""
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, _o, p=p: order.append(p))
        for p, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(example)
            model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return order


def match_layers(fp32: Path, model: nn.Module | None, example: torch.Tensor | None) -> list[Layer]:
    nodes = onnx_layers(fp32)
    modules: list[str | None] = [None] * len(nodes)
    if model is not None and example is not None:
        order = execution_order(model, example)
        if len(order) == len(nodes):
            modules = list(order)
    return [Layer(n, op, m) for (n, op), m in zip(nodes, modules, strict=True)]


def host_latency_ms(
    path: Path, shape: tuple[int, ...], threads: int | None, runs: int = 200, sample: np.ndarray | None = None
) -> float:
    """Median batch-1 latency in ONNX Runtime in this process (for comparisons between variants), on random
    inputs of ``shape`` or on ``sample`` (one real sample: a text model's tokens)."""
    ort = OrtModel(path, threads)
    x = sample if sample is not None else np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    for _ in range(20):
        ort.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ort.run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def quantize_with_fallback(
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    evaluate: Callable[[Path], float],
    accept: Callable[[float], bool],
    layers: list[Layer],
    quant_kwargs: dict[str, Any],
    max_fallback: int | None = None,
    log: Callable[[str], None] = lambda _s: None,
) -> FallbackResult:
    """Quantize ``fp32`` to ``out``; if ``accept(val accuracy)`` fails, rank layers by leave-one-out sensitivity
    and return them to fp32 one by one until it holds (or ``max_fallback`` layers are fp32). ``out`` holds the
    most accurate model tried when the guard cannot be met."""
    quantize_static_onnx(fp32, out, calib, **quant_kwargs)
    full = evaluate(out)
    result = FallbackResult(layers, full, full, [{"fp32_layers": [], "val_accuracy": full}])
    if accept(full) or not layers:
        return result
    log(f"INT8 val accuracy {full:.2f}% breaks the guard: measuring per-layer sensitivity ({len(layers)} layers)")
    with tempfile.TemporaryDirectory(prefix="edgekd-fallback-") as tmp:
        trial = Path(tmp) / "trial.onnx"
        for layer in layers:
            quantize_static_onnx(fp32, trial, calib, nodes_to_exclude=[layer.node], **quant_kwargs)
            layer.sensitivity = round(evaluate(trial) - full, 3)
        ranked = sorted(layers, key=lambda layer: -(layer.sensitivity or 0.0))
        limit = len(ranked) if max_fallback is None else min(max_fallback, len(ranked))
        best_acc, best_excluded = full, []
        excluded: list[str] = []
        for layer in ranked[:limit]:
            excluded.append(layer.node)
            quantize_static_onnx(fp32, trial, calib, nodes_to_exclude=list(excluded), **quant_kwargs)
            acc = evaluate(trial)
            result.trials.append({"fp32_layers": list(excluded), "val_accuracy": acc})
            log(f"  {len(excluded)} layer(s) in fp32 (last {layer.node}): val {acc:.2f}%")
            if acc > best_acc:
                best_acc, best_excluded = acc, list(excluded)
            if accept(acc):
                best_acc, best_excluded = acc, list(excluded)
                break
        for layer in layers:
            if layer.node in best_excluded:
                layer.precision, layer.reason = "fp32", "accuracy"
        quantize_static_onnx(fp32, out, calib, nodes_to_exclude=best_excluded, **quant_kwargs)
        result.accuracy = best_acc
    return result


def latency_fallback(
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    result: FallbackResult,
    shape: tuple[int, ...],
    threads: int | None,
    quant_kwargs: dict[str, Any],
    evaluate: Callable[[Path], float],
    accept: Callable[[float], bool],
    margin: float = 0.05,
) -> None:
    """Per layer: keep a layer in fp32 when that makes the INT8 model more than ``margin`` faster on the host
    (and the guard still holds)."""
    with tempfile.TemporaryDirectory(prefix="edgekd-latency-") as tmp:
        trial = Path(tmp) / "trial.onnx"
        base = host_latency_ms(out, shape, threads)
        for layer in result.layers:
            if layer.precision != "int8":
                continue
            excluded = [*result.excluded, layer.node]
            quantize_static_onnx(fp32, trial, calib, nodes_to_exclude=excluded, **quant_kwargs)
            t = host_latency_ms(trial, shape, threads)
            layer.latency_gain = round(base / t, 3)
            if t < base * (1 - margin):
                acc = evaluate(trial)
                if accept(acc):
                    layer.precision, layer.reason = "fp32", "latency"
                    base = t
                    result.accuracy = acc
                    shutil.copyfile(trial, out)
