"""How exactly QAT's simulation predicts the INT8 file each runtime deploys, on the example's real model and data.

    python benchmarks/qat_fidelity.py [--val 6000]

Takes the example teacher (ResNet-20 w32, trained on Fashion-MNIST: a real network with real activation ranges),
puts its weights on the INT8 grid as QAT leaves them (``snap_weights``), calibrates on the example's 256
calibration images, and compares the simulation's logits with the deployed file's on the validation split:

* x86-cpu: the ONNX Runtime QDQ file (uint8 activations, int32 biases) in ONNX Runtime as deployed, and its
  QDQ graph run operator by operator (what its Q/DQ nodes specify);
* jetson-orin-nano: the TensorRT-ready QDQ file (symmetric int8 activations, float biases), graph run
  operator by operator (TensorRT is not installed here; its kernels are not measured);
* raspberry-pi-4: the LiteRT INT8 file litert-torch's PT2E quantizer writes, in LiteRT (XNNPACK).

Each comparison also gives the float model's logits against the same file: what a training that does not
simulate the runtime assumes. Figures are in units of the logits' own quantization step too. Writes
``benchmarks/results/qat_fidelity.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from edgekd.backends.base import int8_scheme, open_model
from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.compiler.plan import load_model_config
from edgekd.config.target import load_target
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data import load_data
from edgekd.data.sources import FASHION_MNIST_SYSTEM
from edgekd.models.build import build, load_weights
from edgekd.stages.quantize.qat import calibrate, deployed_agreement, simulate, snap_weights

CONFIG = ROOT / "examples" / "fashion-mnist" / "model.yaml"
OUT = ROOT / "benchmarks" / "results" / "qat_fidelity.json"


def _teacher(cfg: Any) -> torch.nn.Module:
    model = build(cfg.teacher, "teacher")
    load_weights(model, cfg.resolve(cfg.teacher.checkpoint), "teacher")
    return model.eval()


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])


def _compare(sim_logits: torch.Tensor, float_logits: torch.Tensor, file_logits: torch.Tensor, step: float,
             y: torch.Tensor) -> dict[str, Any]:  # fmt: skip
    sim, flt = deployed_agreement(sim_logits, file_logits), deployed_agreement(float_logits, file_logits)
    for d in (sim, flt):
        d["mean_abs_logit_diff_steps"] = round(d["mean_abs_logit_diff"] / step, 3)
        d["max_abs_logit_diff_steps"] = round(d["max_abs_logit_diff"] / step, 3)
    return {
        "simulation": sim,
        "float_model": flt,
        "val_accuracy": {
            "simulated": round(float((sim_logits.argmax(1) == y).float().mean() * 100), 3),
            "file": round(float((file_logits.argmax(1) == y).float().mean() * 100), 3),
            "float": round(float((float_logits.argmax(1) == y).float().mean() * 100), 3),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val", type=int, default=6000, help="validation images compared")
    args = ap.parse_args()
    if not FASHION_MNIST_SYSTEM.is_dir():
        sys.exit(f"needs the full Fashion-MNIST set: apt-get install dataset-fashion-mnist ({FASHION_MNIST_SYSTEM})")
    cfg = load_model_config(CONFIG)
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed)
    calib, x, y = data.calibration.x, data.val.x[: args.val], data.val.y[: args.val]
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for target_name in ("x86-cpu", "jetson-orin-nano", "raspberry-pi-4"):
            target = load_target(target_name)
            backend = target.backends[0]
            model = _teacher(cfg)
            scheme = int8_scheme(backend, target.quantization, cfg.calibration.method)
            sim = simulate(model, calib[:2], scheme)
            calibrate(sim, calib)
            snap_weights(sim)  # the weights as QAT leaves them
            calibrate(sim, calib)  # the ranges the deployed calibration finds
            sim.module.eval()
            sim_logits, float_logits = _predict(sim.module, x), _predict(model, x)
            step = float(sim.quantizers[next(reversed(sim.quantizers))].qparams()[0])
            row: dict[str, Any] = {"scheme": scheme.runtime, "backend": backend, "logit_step": step}
            if backend == "onnx":
                fp32 = export_onnx(model, calib[:1], Path(tmp) / f"{target_name}.onnx")
                q = target.quantization
                int8 = quantize_static_onnx(
                    fp32, Path(tmp) / f"{target_name}.int8.onnx", calib.numpy(), activation_type=q.activation_type,
                    per_channel=q.per_channel, quantize_bias=q.quantize_bias, method=cfg.calibration.method,
                )  # fmt: skip
                graph = torch.from_numpy(OrtModel(int8, optimize=False).predict(x.numpy()))
                row["vs_qdq_graph"] = _compare(sim_logits, float_logits, graph, step, y)
                if target.is_host:
                    kernels = torch.from_numpy(OrtModel(int8).predict(x.numpy()))
                    row["vs_onnxruntime_kernels"] = _compare(sim_logits, float_logits, kernels, step, y)
            else:
                from edgekd.backends.tflite.lower import convert_tflite

                path = convert_tflite(
                    model, calib[:1], Path(tmp) / f"{target_name}.int8.tflite", precision="int8",
                    calibration=calib.numpy(), per_channel=target.quantization.per_channel,
                )  # fmt: skip
                lite = torch.from_numpy(open_model(path).predict(x.numpy()))
                row["vs_litert"] = _compare(sim_logits, float_logits, lite, step, y)
            rows[target_name] = row
            print(target_name, json.dumps({k: v for k, v in row.items() if k.startswith("vs_")}), flush=True)
    result = {
        "benchmark": "qat_fidelity",
        "command": "python benchmarks/qat_fidelity.py" + (f" --val {args.val}" if args.val != 6000 else ""),
        "model": {
            "arch": cfg.teacher.arch,
            "params": cfg.teacher.params,
            "checkpoint": str(cfg.teacher.checkpoint),
            "sha256": hashlib.sha256(cfg.resolve(cfg.teacher.checkpoint).read_bytes()).hexdigest(),
        },
        "data": {"source": data.source, "compared": f"val split, first {len(y)} images", "calibration": len(calib)},
        "calibration_method": cfg.calibration.method,
        "targets": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "environment": {"machine": platform.machine(), "torch": torch.__version__, "python": platform.python_version()},
    }
    atomic_write_bytes(OUT, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
