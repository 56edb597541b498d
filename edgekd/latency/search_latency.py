"""Where the search and prune passes get a candidate's latency, in the units of the file the compile ships.

The kind of file is the target's format (``.tflite`` for a LiteRT target, else ONNX) at the precision the compile
ships (its quantize pass: INT8, else fp32; :func:`edgekd.latency.predictor.files.shipped_kind`).

- ``latency: predictor`` in the target: always predicted by the target's predictor of that kind (the file must
  exist);
- the target runs here (ONNX Runtime or LiteRT on this host): the candidate is written as that kind of file and
  measured by the standalone runner as the profile pass measures artifacts
  (:func:`edgekd.latency.candidate.measured_latency_ms`, the target's timing);
- another target (its device is not measured per candidate): predicted by its predictor of that kind; an INT8
  compile with only an fp32 predictor is predicted by the fp32 one, and says so; else none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from edgekd.config.target import TargetConfig
from edgekd.core.errors import ProfilingError
from edgekd.latency.candidate import describe, measured_latency_ms
from edgekd.latency.predictor.artifacts import ArtifactSettings
from edgekd.latency.predictor.files import PredictorKind, shipped_kind
from edgekd.latency.predictor.lookup import load_for_target, predictor_path
from edgekd.latency.predictor.model import LatencyPredictor

LatencyFn = Callable[[nn.Module, tuple[int, ...]], float]


@dataclass
class CandidateLatency:
    """``source``: measured-host, predicted or none; ``describe``: one sentence for search.json and the report;
    ``kind``: the kind of file the figures are for (``onnx-int8``, ...); ``runtime``: the runtime timing it."""

    source: str
    describe: str
    fn: LatencyFn | None
    predictor: str | None = None
    kind: str | None = None
    runtime: str | None = None

    def record(self) -> dict[str, str | None]:
        """What produced the figures (for search.json / result.json)."""
        return {"source": self.source, "kind": self.kind, "runtime": self.runtime, "predictor": self.predictor}


def _predictor(target: TargetConfig, kind: PredictorKind) -> tuple[LatencyPredictor | None, str]:
    """The predictor of ``kind``, else (for INT8) of fp32 with a sentence saying so; errors raised only when the
    target says ``latency: predictor``."""
    tried = [kind] if kind.precision == "fp32" else [kind, PredictorKind(kind.artifact, "fp32")]
    for k in tried:
        try:
            pred = load_for_target(target, k)
        except ProfilingError:
            if target.latency == "predictor":
                raise
            pred = None
        if pred is not None:
            caveat = "" if k == kind else f" (no {kind.key} predictor: the {k.key} table stands in, INT8 runs faster)"
            return pred, caveat
    return None, ""


def candidate_latency(target: TargetConfig, precision: str | None = None) -> CandidateLatency:
    """How candidates of a compile shipping ``precision`` (int8, fp16, fp32; None: fp32) are timed for ``target``."""
    kind = shipped_kind(target, precision)
    settings = ArtifactSettings.of(target)
    if target.latency == "predictor" or not target.is_host:
        pred, caveat = _predictor(target, kind)
        if pred is None and target.latency == "predictor":
            raise ProfilingError(
                f"target {target.name} says latency: predictor but has no {kind.key} predictor file "
                f"({predictor_path(target, kind)})",
                fix=f"build it: edgekd profile --build-predictor --target {target.name} --precision {kind.precision}",
            )
        if pred is not None:
            p = pred

            def predicted(model: nn.Module, shape: tuple[int, ...]) -> float:
                return p.predict_module(model, shape, settings).p50_ms

            return CandidateLatency(
                "predicted", f"{p.where}, batch 1{caveat}", predicted, p.path, p.kind.key, p.device.get("runtime")
            )
        return CandidateLatency(
            "none", f"not measured ({target.name} is not this host and has no {kind.key} predictor)", None,
            kind=kind.key,
        )  # fmt: skip

    timing = target.timing()
    delegate = str(target.runtime.options.get("delegate", "xnnpack"))

    def measured(model: nn.Module, shape: tuple[int, ...]) -> float:
        return measured_latency_ms(model, shape, timing, kind, settings, delegate)

    return CandidateLatency(
        "measured-host", describe(timing, kind), measured, kind=kind.key, runtime=target.runtime.name
    )
