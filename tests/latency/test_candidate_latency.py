"""One way to measure: the search's candidates and the prune pass's latency stop are timed by the standalone
runner with the target's timing, as the profile pass times artifacts (before: an in-process median of 50 runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekd
from edgekd.config.target import load_target
from edgekd.core.errors import PipelineError
from edgekd.latency.search_latency import candidate_latency
from edgekd.models import zoo
from tests.helpers import tiny_config, write_config


def test_host_candidates_are_timed_by_the_runner_with_the_targets_timing() -> None:
    target = load_target("x86-cpu")
    lat = candidate_latency(target)
    t = target.timing()
    assert lat.source == "measured-host"
    assert "standalone runner" in lat.describe and f"{t.runs} runs x {t.rounds} rounds" in lat.describe
    assert lat.fn is not None
    assert lat.fn(zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1}), (1, 28, 28)) > 0


def test_a_prune_latency_stop_on_a_target_that_cannot_be_timed_is_an_error(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"prune": {"ratio": 0.3, "until": {"latency_ms": 0.1}}}, {"report": {}}])
    with pytest.raises(PipelineError, match=r"until.latency_ms needs latency on jetson-orin-nano"):
        edgekd.compile(write_config(tmp_path, cfg), target="jetson", out=tmp_path / "runs", quiet=True)
