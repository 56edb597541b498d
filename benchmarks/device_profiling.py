"""Does latency measured through the SSH device path agree with the same measurement taken directly on the host?

A real sshd on 127.0.0.1 acts as the device (same machine, so the true latencies are identical): every model is
measured R times directly (edgekd.latency.measure.measure) and R times through DeviceProfiler (copy over ssh,
runner.py run by the "device's" Python), alternating, and the medians of the p50s are compared. A ratio near 1.0
means the device path adds no measurement bias; the wall time shows what the SSH round trips cost.

Models: zoo ResNets exported to ONNX. Latency does not depend on the weights' values, so they are random-initialised
(the example teacher's ResNet-20 w32 architecture is included). Needs root (to start sshd) and openssh-server.

    nice -n 5 env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/device_profiling.py
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.profiling.conftest import start_sshd

from edgekd.backends.onnx.lower import export_onnx
from edgekd.config.target import Timing, parse_target
from edgekd.latency.device import DeviceProfiler
from edgekd.latency.measure import measure
from edgekd.models import zoo

MODELS = {
    "resnet8_w8": {"depth": 8, "width": 8},
    "resnet8_w16": {"depth": 8, "width": 16},
    "resnet14_w16": {"depth": 14, "width": 16},
    "resnet20_w32": {"depth": 20, "width": 32},
}
REPEATS, WARMUP, RUNS, ROUNDS, THREADS = 7, 20, 200, 5, 1


def main() -> None:
    out = ROOT / "benchmarks" / "results" / "device_profiling.json"
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        paths = []
        for name, params in MODELS.items():
            torch.manual_seed(0)
            model = zoo.build("resnet", {**params, "in_channels": 1, "num_classes": 10}).eval()
            path = tmp / f"{name}.onnx"
            export_onnx(model, torch.zeros(1, 1, 28, 28), path)
            paths.append(path)
        with start_sshd(tmp / "sshd") as server:
            target = parse_target(
                {
                    "name": "loopback-device",
                    "backends": ["onnx"],
                    "precisions": ["fp32"],
                    "runtime": {"name": "onnxruntime", "threads": THREADS},
                    "device": server.device(workdir=str(tmp / "workdir")),
                }
            )
            profiler = DeviceProfiler(target)
            host: dict[str, list[float]] = {n: [] for n in MODELS}
            device: dict[str, list[float]] = {n: [] for n in MODELS}
            host_wall, device_wall = [], []
            where = ""
            for r in range(REPEATS):
                order = ["host", "device"] if r % 2 == 0 else ["device", "host"]
                for kind in order:
                    start = time.perf_counter()
                    if kind == "host":
                        stats = measure(paths, threads=THREADS, warmup=WARMUP, runs=RUNS, rounds=ROUNDS)
                        host_wall.append(time.perf_counter() - start)
                        for n, s in zip(MODELS, stats, strict=True):
                            host[n].append(s.p50_ms)
                    else:
                        run = profiler.measure(paths, Timing(WARMUP, RUNS, ROUNDS, THREADS, 1))
                        device_wall.append(time.perf_counter() - start)
                        where = run.where
                        for n, s in zip(MODELS, run.stats, strict=True):
                            device[n].append(s.p50_ms)
                print(f"repeat {r + 1}/{REPEATS} done", file=sys.stderr)
    per_model = {}
    for n in MODELS:
        h, d = statistics.median(host[n]), statistics.median(device[n])
        per_model[n] = {
            "host_p50_ms_median": h,
            "device_p50_ms_median": d,
            "device_over_host": d / h,
            "host_p50_ms_all": host[n],
            "device_p50_ms_all": device[n],
        }
    ratios = [v["device_over_host"] for v in per_model.values()]
    doc = {
        "what": "p50 latency through the SSH device path (loopback sshd) vs measured directly on the host",
        "machine": {"machine": platform.machine(), "python": platform.python_version()},
        "settings": {"repeats": REPEATS, "warmup": WARMUP, "runs": RUNS, "rounds": ROUNDS, "threads": THREADS},
        "device_where": where,
        "models": per_model,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "wall_s_median": {"host": statistics.median(host_wall), "device": statistics.median(device_wall)},
        "weights": "random initialisation (latency does not depend on weight values)",
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("ratio_min", "ratio_max", "wall_s_median")}, indent=2))
    for n, v in per_model.items():
        print(f"{n:14s} host {v['host_p50_ms_median']:.3f} ms  device {v['device_p50_ms_median']:.3f} ms  "
              f"ratio {v['device_over_host']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
