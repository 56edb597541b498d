"""Where the search pass gets a candidate's latency: measured on this host, or predicted by the target's predictor.

- ``latency: predictor`` in the target: always predicted (the predictor file must exist);
- the target is this host: measured by the standalone runner as the profile pass measures artifacts
  (:func:`edgekd.latency.candidate.measured_latency_ms`, the target's timing);
- another target (its device is not measured per candidate): predicted when it has a predictor file, else none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from edgekd.config.target import TargetConfig
from edgekd.core.errors import ProfilingError
from edgekd.latency.candidate import describe, measured_latency_ms
from edgekd.latency.predictor.lookup import load_for_target, predictor_path
from edgekd.latency.predictor.model import LatencyPredictor

LatencyFn = Callable[[nn.Module, tuple[int, ...]], float]


@dataclass
class CandidateLatency:
    """``source``: measured-host, predicted or none; ``describe``: one sentence for search.json and the report."""

    source: str
    describe: str
    fn: LatencyFn | None
    predictor: str | None = None


def candidate_latency(target: TargetConfig) -> CandidateLatency:
    if target.latency == "predictor" or not target.is_host:
        try:
            pred: LatencyPredictor | None = load_for_target(target)
        except ProfilingError:
            if target.latency == "predictor":
                raise
            pred = None
        if pred is None and target.latency == "predictor":
            raise ProfilingError(
                f"target {target.name} says latency: predictor but has no predictor file ({predictor_path(target)})",
                fix=f"build it: edgekd profile --build-predictor --target {target.name}",
            )
        if pred is not None:
            p = pred

            def predicted(model: nn.Module, shape: tuple[int, ...]) -> float:
                return p.predict_module(model, shape).p50_ms

            return CandidateLatency("predicted", f"{p.where}, batch 1", predicted, p.path)
        return CandidateLatency("none", f"not measured ({target.name} is not this host and has no predictor)", None)

    timing = target.timing()

    def measured(model: nn.Module, shape: tuple[int, ...]) -> float:
        return measured_latency_ms(model, shape, timing)

    return CandidateLatency("measured-host", describe(timing), measured)
