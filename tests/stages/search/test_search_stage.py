"""search in the pipeline: the chosen student meets the budget (measured), is distilled, and runs repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.core.errors import PipelineError
from tests.helpers import tiny_config, write_config

SEARCH = {
    "space": {"blocks": [[1], [1, 2], [1]], "widths": [[4, 8], [8, 16], [16]], "kernel": [3]},
    "population": 3,
    "sample": 2,
    "iterations": 4,
    "batches": 2,
    "batch_size": 16,
    "budget": {"params": 30000, "latency_ms": 5.0},
}


def _cfg(tmp_path: Path, search: dict) -> Path:
    cfg = tiny_config(
        tmp_path,
        passes=[{"search": search}, {"distill": {"epochs": 1, "batch_size": 64}}, {"lower": {}}, {"report": {}}],
    )
    del cfg["student"]
    return write_config(tmp_path, cfg)


def test_search_picks_a_student_within_budget_and_distill_trains_it(tmp_path: Path) -> None:
    res = edgekd.compile(_cfg(tmp_path, SEARCH), out=tmp_path / "runs", quiet=True)
    doc = json.loads(res.artifacts["search_json"].read_text())
    assert doc["proxy"] == "params" and len(doc["history"]) == 7  # the default proxy for image teachers
    for row in doc["history"]:
        assert row["params"] <= 30000 and row["latency_ms"] <= 5.0
    chosen = doc["chosen"]
    assert chosen["score"] == max(r["score"] for r in doc["history"])
    assert res.metrics["student"]["params_spec"]["widths"] == chosen["widths"]
    assert res.metrics["distill"]["test_accuracy"] > 0 and res.artifacts["onnx"].is_file()
    assert doc["pareto"] and all(r in doc["history"] for r in doc["pareto"]) is not None


def test_search_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    config = _cfg(tmp_path, {**SEARCH, "budget": {"params": 30000}, "iterations": 3, "proxy": "diswot"})
    runs = [edgekd.compile(config, out=tmp_path / f"runs{i}", quiet=True) for i in range(2)]
    docs = [json.loads(r.artifacts["search_json"].read_text()) for r in runs]
    assert [(h["blocks"], h["widths"], h["score"]) for h in docs[0]["history"]] == [
        (h["blocks"], h["widths"], h["score"]) for h in docs[1]["history"]
    ]


def test_latency_budget_needs_a_measurable_target(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="latency_ms needs latency on jetson-orin-nano"):
        edgekd.compile(_cfg(tmp_path, SEARCH), target="jetson", out=tmp_path / "runs", quiet=True)


def test_budget_no_candidate_meets(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no sampled candidate within the budget"):
        edgekd.compile(_cfg(tmp_path, {**SEARCH, "budget": {"params": 10}}), out=tmp_path / "runs", quiet=True)


def test_search_over_the_mobilenet_space_distills_and_exports_the_choice(tmp_path: Path) -> None:
    space = {
        "type": "mobilenet",
        "depths": [[1], [1, 2]],
        "widths": [[4], [8, 16]],
        "expand": [[1], [2, 4]],
        "kernel": [[3], [3, 5]],
        "stem": 4,
    }
    search = {**SEARCH, "space": space, "population": 3, "iterations": 3, "budget": {"params": 2000, "latency_ms": 5.0}}
    res = edgekd.compile(_cfg(tmp_path, search), out=tmp_path / "runs", quiet=True)
    doc = json.loads(res.artifacts["search_json"].read_text())
    assert doc["arch"] == "mobilenet" and doc["space"] == "mobilenet" and doc["space_size"] == 16
    assert all(r["params"] <= 2000 and r["latency_ms"] <= 5.0 for r in doc["history"])
    assert doc["rejected"]["params"] > 0, "the budget rejected the wider candidates"
    assert res.metrics["student"]["arch"] == "mobilenet"
    assert res.metrics["student"]["params_spec"]["depths"] == doc["chosen"]["depths"]
    assert doc["chosen"]["label"].startswith("depths=1,")
    assert res.artifacts["onnx"].is_file() and res.metrics["distill"]["test_accuracy"] > 0


def test_several_budgets_in_one_search_give_one_student_each(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """AutoDistil-style: budget.macs lists three budgets; each gets its best candidate within it, the compile
    trains the first one's, and `edgekd search` prints one student per budget."""
    from edgekd.cli import main

    search = {**SEARCH, "budget": {"macs": [1.0e6, 1.65e6, 3.0e6]}, "iterations": 3}
    res = edgekd.compile(_cfg(tmp_path, search), out=tmp_path / "runs", quiet=True)
    doc = json.loads(res.artifacts["search_json"].read_text())
    per = doc["per_budget"]
    assert [b["budget"]["macs"] for b in per] == [1.0e6, 1.65e6, 3.0e6]
    for b in per:
        assert b["chosen"]["macs"] <= b["budget"]["macs"]
    assert per[0]["chosen"]["macs"] < per[2]["chosen"]["macs"]  # a looser budget buys a bigger student here
    assert doc["chosen"] == per[0]["chosen"]
    assert res.metrics["student"]["params_spec"]["widths"] == per[0]["chosen"]["widths"]
    capsys.readouterr()
    assert main(["search", str(tmp_path / "model.yaml"), "--out", str(tmp_path / "runs2"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "One student per budget (the compile trains the first):" in out and "macs <= 1.65e+06:" in out


def test_several_budgets_must_be_one_kind() -> None:
    from edgekd.stages.search.stage import Budget

    with pytest.raises(ValueError, match="several budgets for one of macs or latency_ms, not both"):
        Budget(macs=[1e6, 2e6], latency_ms=[0.1, 0.2])
    with pytest.raises(ValueError, match="every budget must be > 0"):
        Budget(latency_ms=[0.1, -1])


def test_the_choice_is_measured_again_and_one_lucky_reading_does_not_make_it(tmp_path: Path, monkeypatch) -> None:
    """The winner's curse: the best candidate passed the latency budget on its one reading but is over it when
    measured again (median of 3), so the search takes the next best, which stays within it."""
    from edgekd.latency import search_latency
    from edgekd.models.count import count_params

    calls: dict[int, int] = {}
    victim: list[int] = []

    def fake(model, *args: object) -> float:
        n = count_params(model)
        calls[n] = calls.get(n, 0) + 1
        if calls[n] > 1 and not victim:
            victim.append(n)  # the first candidate measured again: its first reading was the lucky one
        return 9.0 if victim and n == victim[0] and calls[n] > 1 else 1.0

    monkeypatch.setattr(search_latency, "measured_latency_ms", fake)
    search = {**SEARCH, "proxy": "params", "budget": {"params": 30000, "latency_ms": 5.0}}
    res = edgekd.compile(_cfg(tmp_path, search), out=tmp_path / "runs", quiet=True)
    doc = json.loads(res.artifacts["search_json"].read_text())
    biggest = max(r["params"] for r in doc["history"])
    assert victim == [biggest], "the best (largest) candidate is the one measured again first"
    first, second = doc["confirmed"]
    assert first["readings_ms"] == [1.0, 9.0, 9.0] and first["median_ms"] == 9.0 and not first["within"]
    assert second["readings_ms"] == [1.0, 1.0, 1.0] and second["within"]
    chosen = doc["chosen"]
    assert chosen["label"] == second["label"] != first["label"] and chosen["params"] < biggest
    assert chosen["latency_ms"] == 1.0
    assert any("over the latency budget 5 ms when measured again" in n for n in res.notes)
    report = res.artifacts["report_md"].read_text()
    assert "measured again" in report and "1.000, 9.000, 9.000" in report and "over: not chosen" in report
    # confirm: 0 trusts one reading (the old behaviour), and then the largest is chosen
    calls.clear()
    res0 = edgekd.compile(_cfg(tmp_path / "c0", {**search, "confirm": 0}), out=tmp_path / "runs0", quiet=True)
    doc0 = json.loads(res0.artifacts["search_json"].read_text())
    assert doc0["chosen"]["params"] == biggest and doc0["confirmed"] is None


def test_the_default_proxy_is_params_for_image_teachers_and_teacher_kl_for_text() -> None:
    """The proxy study's choice (README, Student search): params, picked by validation tau on one space, ranks
    best of every proxy on the untouched one; text teachers keep teacher_kl (their inherited candidates)."""
    from edgekd.stages.search.stage import SearchConfig

    assert SearchConfig().proxy == "params"
    assert SearchConfig(proxy="diswot").proxy == "diswot"
    import inspect

    assert inspect.signature(edgekd.search).parameters["proxy"].default == "params"
