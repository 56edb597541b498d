"""Latency predictor: NNLS, fitting recovers a known kernel table, unseen shapes, file round trip and errors,
and a real (small) build measured on this host."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgekd.config.target import load_target
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.calibrate import build_predictor, export_spec
from edgekd.latency.predictor.fit import nnls
from edgekd.latency.predictor.kernels import Graph, Kernel, detect
from edgekd.latency.predictor.lookup import load_for_target, predictor_path
from edgekd.latency.predictor.model import LatencyPredictor

# a known "device": per kernel type (ms per kernel, ms per MMAC, ms per MB) and a per-model overhead
TRUTH = {"count_ms": 0.004, "ms_per_mmac": 0.02, "ms_per_mb": 0.05}
OVERHEAD = 0.01


def _true_ms(g: Graph) -> float:
    return OVERHEAD + sum(
        TRUTH["count_ms"] + TRUTH["ms_per_mmac"] * k.macs * 1e-6 + TRUTH["ms_per_mb"] * k.bytes * 1e-6
        for k in g.kernels
        if k.type != "reshape"
    )


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> list[Graph]:
    """30 small ResNets of varied depth, width and input size (few kernel types, so 22 models determine them)."""
    tmp = tmp_path_factory.mktemp("calib")
    rng = random.Random(3)
    specs = [
        {
            "kind": "resnet",
            "in_channels": 1,
            "num_classes": 10,
            "size": rng.choice([8, 12, 16, 20]),
            "blocks": [rng.randint(1, 3) for _ in range(3)],
            "widths": sorted(rng.choice([16, 32, 48]) for _ in range(3)),
            "kernel": 3,
        }
        for _ in range(30)
    ]
    return [detect(export_spec(s, tmp / f"m{i}.onnx")) for i, s in enumerate(specs)]


def test_nnls_matches_the_constrained_optimum() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((40, 5))
    x_true = np.array([0.5, 0.0, 2.0, 0.0, 1.0])
    x = nnls(a, a @ x_true)
    assert np.allclose(x, x_true, atol=1e-8)
    # an unconstrained solution with a negative entry is clipped to the boundary, not returned
    b = a @ np.array([1.0, -1.0, 0.0, 0.0, 0.0])
    assert (nnls(a, b) >= 0).all()


def test_fit_recovers_a_known_table_and_predicts_unseen_models(graphs: list[Graph]) -> None:
    train, test = graphs[:22], graphs[22:]
    rows = [{"name": f"m{i}", "p50_ms": _true_ms(g), "graph": g} for i, g in enumerate(train)]
    pred = LatencyPredictor.from_measurements(rows, {"where": "synthetic"}, ridge=0.0)
    for g in test:  # models the fit never saw
        p = pred.predict_graph(g).p50_ms
        assert p == pytest.approx(_true_ms(g), rel=0.02)
    assert pred.fit_quality["leave_one_out"]["within_10pct"] >= 0.9


def test_the_channel_block_the_device_pads_to_is_chosen_and_saved(tmp_path: Path) -> None:
    # a "device" that runs every convolution with its channels padded to 16 (ONNX Runtime's NCHWc on AVX-512):
    # widths that are not multiples of 16 cost more than their MACs say; only the block-16 fit explains that
    rng = random.Random(5)
    specs = [
        {
            "kind": "resnet",
            "in_channels": 1,
            "num_classes": 10,
            "size": rng.choice([8, 12, 16]),
            "blocks": [rng.randint(1, 2) for _ in range(3)],
            "widths": sorted(rng.choice([8, 12, 16, 20, 24, 40]) for _ in range(3)),
            "kernel": 3,
        }
        for _ in range(24)
    ]
    paths = [export_spec(s, tmp_path / f"m{i}.onnx") for i, s in enumerate(specs)]
    rows = []
    for i, path in enumerate(paths):
        graphs = {b: detect(path, channel_block=b) for b in (1, 8, 16)}
        rows.append({"name": f"m{i}", "p50_ms": _true_ms(graphs[16]), "graphs": graphs})
    pred = LatencyPredictor.from_measurements(rows[:18], {"where": "synthetic"}, ridge=0.0)
    assert pred.channel_block == 16 and pred.fit_quality["channel_block"] == 16
    by_block = pred.fit_quality["leave_one_out_median_by_channel_block"]
    assert by_block["16"] < 0.01 < min(by_block["1"], by_block["8"])
    out = tmp_path / "pad.predictor.json"
    pred.save(out)
    loaded = LatencyPredictor.load(out)
    assert loaded.channel_block == 16
    for path, row in zip(paths[18:], rows[18:], strict=True):  # unseen models, detected at the saved block
        assert loaded.predict(path).p50_ms == pytest.approx(row["p50_ms"], rel=0.02)


def test_unstable_measurements_are_kept_but_not_fitted(graphs: list[Graph]) -> None:
    rows = [{"name": f"m{i}", "p50_ms": _true_ms(g), "p50_spread": 0.01, "graph": g} for i, g in enumerate(graphs)]
    rows[0]["p50_ms"] *= 5  # a measurement disturbed by another process
    rows[0]["p50_spread"] = 0.8
    pred = LatencyPredictor.from_measurements(rows, {}, ridge=0.0)
    assert pred.fit_quality["excluded_unstable"] == 1
    assert [m["fitted"] for m in pred.measurements][:2] == [False, True]
    assert pred.predict_graph(graphs[0]).p50_ms == pytest.approx(_true_ms(graphs[0]), rel=0.02)


def test_save_load_round_trip_and_per_layer(graphs: list[Graph], tmp_path: Path) -> None:
    rows = [{"name": f"m{i}", "p50_ms": _true_ms(g), "graph": g} for i, g in enumerate(graphs)]
    pred = LatencyPredictor.from_measurements(rows, {"where": "host (x86_64, 1 threads)", "threads": 1}, "x86-cpu")
    path = pred.save(tmp_path / "x.predictor.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "edgekd-latency-predictor" and doc["version"] == 2 and doc["device"]["threads"] == 1
    assert (doc["artifact"], doc["precision"]) == ("onnx", "fp32") and again_kind(path) == "onnx-fp32"
    assert len(doc["measurements"]) == len(graphs)
    again = LatencyPredictor.load(path)
    p1, p2 = pred.predict_graph(graphs[3]), again.predict_graph(graphs[3])
    assert p1.p50_ms == pytest.approx(p2.p50_ms)
    lat = p2.to_latency(3)
    assert lat["source"] == "predicted" and lat["measured"] is False and len(lat["per_layer"]) == 3
    assert "x.predictor.json" in lat["where"] and "host (x86_64, 1 threads)" in lat["where"]


def again_kind(path: Path) -> str:
    return LatencyPredictor.load(path).kind.key


def test_unmeasured_kernel_types_use_the_nearest_measured_one() -> None:
    coef = {"count_ms": 0.001, "ms_per_mmac": 0.02, "ms_per_mb": 0.05}
    pool = {"count_ms": 0.002, "ms_per_mmac": 0.0, "ms_per_mb": 0.0}
    pred = LatencyPredictor({"conv3x3": coef, "conv7x7.a8": coef, "conv1x1.a16": coef, "pool": pool}, 0.0, 0.0, {})
    graph = Graph(
        [
            Kernel("conv9x9.a16", ["a"], 1e6, 1e4, []),  # nearest measured size 7, nearest alignment a8
            Kernel("conv5x5", ["b"], 1e6, 1e4, []),  # sizes 3 and 7 tie: the larger
            Kernel("conv3x3.a16", ["c"], 1e6, 1e4, []),  # same size, other alignment
            Kernel("conv3x3.plain", ["d"], 1e6, 1e4, []),  # another algorithm of a channel-block table
            Kernel("reorder", ["r"], 0.0, 1e4, []),  # a layout change the table never saw: free
            Kernel("gpool", ["g"], 1e3, 1e3, []),  # a table from before global pools had their own type
        ],
        0.0,
    )
    p = pred.predict_graph(graph)
    assert p.substituted == {
        "conv9x9.a16": "conv7x7.a8",
        "conv5x5": "conv7x7.a8",
        "conv3x3.a16": "conv3x3",
        "conv3x3.plain": "conv3x3",
        "gpool": "pool",
    }
    assert p.p50_ms == pytest.approx(4 * (0.001 + 0.02 + 0.05 * 0.01) + 0.002)
    with pytest.raises(ProfilingError, match=r"no measurements for kernel type\(s\) qconv3x3") as err:
        pred.predict_graph(Graph([Kernel("qconv3x3", ["q"], 1e6, 1e4, [])], 0.0))
    # an INT8 kernel in an fp32 table: the fix names the INT8 predictor, built with the --precision flag that exists
    assert "--build-predictor --target <target> --precision int8" in (err.value.fix or "")
    # among INT8 kernels the same rules hold (an INT8 table with few calibration models lacks some sizes)
    q = LatencyPredictor({"qconv3x3.a16": coef, "qdwconv": coef, "conv7x7.a8": coef}, 0.0, 0.0, {})
    p = q.predict_graph(
        Graph([Kernel("qconv5x5.a16", ["a"], 1e6, 1e4, []), Kernel("qdwconv.a8", ["b"], 1e6, 1e4, [])], 0.0)
    )
    assert p.substituted == {"qconv5x5.a16": "qconv3x3.a16", "qdwconv.a8": "qdwconv"}
    with pytest.raises(ProfilingError, match=r"qconv7x7"):  # never from the fp32 conv7x7
        LatencyPredictor({"conv7x7.a8": coef}, 0.0, 0.0, {}).predict_graph(
            Graph([Kernel("qconv7x7", ["c"], 1e6, 1e4, [])], 0.0)
        )
    with pytest.raises(ProfilingError, match=r"no measurements for kernel type\(s\) softmax") as err:
        pred.predict_graph(Graph([Kernel("softmax", ["s"], 1e6, 1e4, [])], 0.0))
    assert "--build-predictor" in (err.value.fix or "")


def test_load_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ProfilingError, match=r"missing\.json: file not found"):
        LatencyPredictor.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ProfilingError, match="not an edgekd predictor file") as err:
        LatencyPredictor.load(bad)
    assert "edgekd profile --build-predictor" in (err.value.fix or "")
    bad.write_text(json.dumps({"format": "edgekd-latency-predictor", "version": 99}))
    with pytest.raises(ProfilingError, match="version 99"):
        LatencyPredictor.load(bad)


def test_target_predictor_path_is_beside_the_target_file(tmp_path: Path) -> None:
    target = tmp_path / "board.yaml"
    target.write_text("name: board\nbackends: [onnx]\nprecisions: [fp32]\n")
    t = load_target(target)
    assert predictor_path(t) == tmp_path / "board.predictor.json" and load_for_target(t) is None
    target.write_text("name: board\nbackends: [onnx]\nprecisions: [fp32]\npredictor: tables/b.json\n")
    t = load_target(target)
    assert predictor_path(t) == tmp_path / "tables" / "b.json"
    with pytest.raises(ProfilingError, match=r"b\.json: file not found"):  # named explicitly: must exist
        load_for_target(t)


def test_build_predictor_measures_on_this_host(tmp_path: Path) -> None:
    target = load_target("x86-cpu").model_copy(deep=True)
    target.runtime.threads = 1
    target.profile.warmup = 2
    pred = build_predictor(target, models=8, repeats=1, runs=10, max_macs=5e6)
    assert pred.fit_quality["models"] + pred.fit_quality["excluded_unstable"] == 8
    assert pred.device["threads"] == 1 and pred.device["runtime"] == "onnxruntime"
    assert "host" in pred.device["where"]
    assert all(m["p50_ms"] > 0 for m in pred.measurements)
    assert pred.overhead_ms >= 0 and all(v >= 0 for t in pred.types.values() for v in t.values())
