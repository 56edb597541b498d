"""Latency predictors per runtime and precision vs measured p50 on held-out models of three families.

For each kind of file a target ships — fp32 ONNX and QDQ INT8 ONNX (uint8 activations, x86-cpu's settings) timed in
ONNX Runtime, fp32 and full-INT8 ``.tflite`` timed in LiteRT with XNNPACK (``benchmarks/targets/x86-litert.yaml``)
— this builds the predictor exactly as ``edgekd profile --build-predictor [--precision int8]`` does (the random
calibration set of :mod:`edgekd.latency.predictor.calibrate`, written as that kind of file) and compares its
predictions with the measured p50 of held-out models, none of which is a calibration model (checked):

- ``resnet``: zoo ResNets (depth 8-32, width 8-32, kernel 3/5, 1x28x28 and 3x32x32 inputs);
- ``mobilenet``: candidates of the search's MobileNet-like space (inverted residuals), 1x28x28 and 3x32x32;
- ``real``: EfficientNet-Lite0 (the architecture of examples/efficientnet-lite0, random weights: latency does not
  depend on them) at 64-112 px, and its teacher-derived shrink students (``student.arch: shrink``) at 96 and 112 px.

Runs in two steps, so each survives a new machine and the timing runs on a quiet CPU:

    python benchmarks/predictor_kinds.py write --work-dir runs/pk [--models 100]   # converts (minutes per kind)
    python benchmarks/predictor_kinds.py measure --work-dir runs/pk [--repeats 3] [--clock thread]

    python benchmarks/predictor_kinds.py search --work-dir runs/pk [--kind tflite-int8]

``measure`` merges its figures into the ``kinds`` key of benchmarks/results/predictor.json. ``search`` ranks 20
MobileNet-space candidates against the Fashion-MNIST example teacher (DisWOT proxy, bundled data) under two
latency budgets on the LiteRT target with ``latency: predictor`` (the measured step's predictor of that kind),
then writes each chosen student as that kind of file and measures it in LiteRT: is it within its budget?
(``kinds_search`` key). One runtime thread;
``--clock thread`` (default) times thread CPU time, which leaves out the waits a shared 2-core machine adds
(see benchmarks/predictor.py); ``--clock wall`` times wall-clock time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from predictor import _errors, _rows

from edgekd.config.target import load_target
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.artifacts import ArtifactSettings, write_artifact
from edgekd.latency.predictor.calibrate import (
    build_spec,
    calibration_specs,
    export_spec,
    fit_files,
    measure_files,
)
from edgekd.latency.predictor.files import PredictorKind

KINDS = {
    "onnx-fp32": ("x86-cpu", PredictorKind("onnx", "fp32")),
    "onnx-int8": ("x86-cpu", PredictorKind("onnx", "int8")),
    "tflite-fp32": (str(ROOT / "benchmarks" / "targets" / "x86-litert.yaml"), PredictorKind("tflite", "fp32")),
    "tflite-int8": (str(ROOT / "benchmarks" / "targets" / "x86-litert.yaml"), PredictorKind("tflite", "int8")),
}
RESULT = ROOT / "benchmarks" / "results" / "predictor.json"


def _target(name: str, threads: int) -> Any:
    t = load_target(name).model_copy(deep=True)
    t.runtime.threads = threads
    return t


def resnet_family() -> list[dict[str, Any]]:
    out = []
    for depth, width, kernel, (cin, size) in [
        (8, 8, 3, (1, 28)), (8, 32, 3, (1, 28)), (14, 16, 3, (1, 28)), (20, 8, 3, (1, 28)), (20, 32, 3, (1, 28)),
        (32, 16, 3, (1, 28)), (8, 16, 5, (1, 28)), (14, 16, 5, (1, 28)), (8, 16, 3, (3, 32)), (20, 16, 3, (3, 32)),
        (20, 24, 3, (3, 32)), (26, 12, 3, (3, 32)),
    ]:  # fmt: skip
        n = (depth - 2) // 6
        out.append({
            "family": "resnet", "name": f"zoo resnet{depth} w{width} k{kernel} {cin}x{size}x{size}",
            "spec": {"kind": "resnet", "in_channels": cin, "num_classes": 10, "size": size, "blocks": [n] * 3,
                     "widths": [width, 2 * width, 4 * width], "kernel": kernel},
        })  # fmt: skip
    return out


def mobilenet_family(n: int = 12, seed: int = 11) -> list[dict[str, Any]]:
    from edgekd.stages.search.space import MobileNetSpace

    space = MobileNetSpace(type="mobilenet")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, ...]] = set()
    while len(out) < n:
        cand = space.sample(rng)
        if cand in seen:
            continue
        seen.add(cand)
        cin, size = (1, 28) if len(out) % 2 == 0 else (3, 32)
        p = space.params(cand, cin, 10)
        spec = {"kind": "mobilenet", "in_channels": cin, "num_classes": 10, "size": size, "stem_stride": 1,
                **{k: p.get(k) for k in ("depths", "widths", "expand", "kernel", "stem", "head")}}  # fmt: skip
        name = f"mobilenet space d{p['depths']} w{p['widths']} e{p['expand']} k{p['kernel']} {cin}x{size}x{size}"
        out.append({"family": "mobilenet", "name": name, "spec": spec})
    return out


def _lite0() -> Any:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0").eval()


def real_family() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"family": "real", "name": f"efficientnet-lite0 3x{s}x{s}", "real": {"size": s}} for s in (64, 80, 96, 112)
    ]
    for size in (96, 112):
        for widths, drop in ((0.5, [0, 1, 1, 1, 1]), (0.75, [0, 0, 1, 2, 1])):
            out.append({
                "family": "real", "name": f"lite0 shrink widths {widths} drop {drop} 3x{size}x{size}",
                "real": {"size": size, "widths": widths, "drop": drop},
            })  # fmt: skip
    return out


def held_out() -> list[dict[str, Any]]:
    return resnet_family() + mobilenet_family() + real_family()


def _model_of(m: dict[str, Any]) -> tuple[Any, tuple[int, int, int]]:
    import torch

    torch.manual_seed(0)
    if "spec" in m:
        s = m["spec"]
        return build_spec(s).eval(), (s["in_channels"], s["size"], s["size"])
    r = m["real"]
    shape = (3, r["size"], r["size"])
    model = _lite0()
    if "widths" in r:
        from edgekd.models.shrink_image import shrink_image

        model = shrink_image(model, {"input_shape": list(shape), "widths": r["widths"], "drop": r["drop"]}).eval()
    return model, shape


def _file(folder: Path, stem: str, kind: PredictorKind) -> Path:
    suffix = {"onnx-fp32": ".onnx", "onnx-int8": ".int8.onnx", "tflite-fp32": ".fp32.tflite",
              "tflite-int8": ".int8.tflite"}[kind.key]  # fmt: skip
    return folder / f"{stem}{suffix}"


def _stem(prefix: str, i: int, text: str) -> str:
    return f"{prefix}{i:03d}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _check_held_out(calib: list[dict[str, Any]], held: list[dict[str, Any]]) -> None:
    def key(s: dict[str, Any]) -> str:
        return json.dumps(s, sort_keys=True)

    keys = {key(s) for s in calib}
    for m in held:
        if "spec" in m and key(m["spec"]) in keys:
            raise SystemExit(f"held-out model {m['name']} is a calibration model")


def write(a: argparse.Namespace) -> int:
    calib = calibration_specs(a.models, a.seed)
    held = held_out()
    _check_held_out(calib, held)
    for key in a.kinds.split(","):
        tname, kind = KINDS[key]
        settings = ArtifactSettings.of(_target(tname, 1))
        folder = Path(a.work_dir) / key
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for i, s in enumerate(calib):
            path = _file(folder, _stem("calib", i, json.dumps(s, sort_keys=True)), kind)
            if not path.is_file():
                export_spec(s, path, a.seed, kind, settings)
        for i, m in enumerate(held):
            path = _file(folder, _stem("held", i, m["name"]), kind)
            if not path.is_file():
                model, shape = _model_of(m)
                write_artifact(model, shape, kind, folder / path.name.split(".")[0], settings)
        print(f"{key}: {len(calib)} calibration + {len(held)} held-out files in {folder} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    return 0


def measure(a: argparse.Namespace) -> int:
    calib = calibration_specs(a.models, a.seed)
    held = held_out()
    _check_held_out(calib, held)
    doc = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    kinds = doc.setdefault("kinds", {})
    for key in a.kinds.split(","):
        tname, kind = KINDS[key]
        target = _target(tname, a.threads)
        folder = Path(a.work_dir) / key
        cpaths = [_file(folder, _stem("calib", i, json.dumps(s, sort_keys=True)), kind) for i, s in enumerate(calib)]
        hpaths = [_file(folder, _stem("held", i, m["name"]), kind) for i, m in enumerate(held)]
        missing = [p for p in cpaths + hpaths if not p.is_file()]
        if missing:
            raise SystemExit(f"{len(missing)} files missing under {folder}: run the write step first")
        t0 = time.perf_counter()
        settings = ArtifactSettings.of(target)
        pred = fit_files(target, calib, cpaths, a.repeats, a.runs, clock=a.clock, kind=kind, settings=settings)
        pred.save(folder / f"predictor.{a.clock}.json")
        build_s = time.perf_counter() - t0
        predicted, missing = [], {}
        for m, p in zip(held, hpaths, strict=True):
            try:
                predicted.append(pred.predict(p).p50_ms)
            except ProfilingError as exc:  # a kernel type no calibration model has: a miss, counted as one
                predicted.append(float("nan"))
                missing[m["name"]] = exc.message.rsplit("kernel type(s) ", 1)[-1]
        measured, spread, device = measure_files(target, hpaths, a.repeats, runs=a.runs, clock=a.clock)
        rows = _rows([m["name"] for m in held], measured, predicted, spread)
        for r, m in zip(rows, held, strict=True):
            r["family"] = m["family"]
            if m["name"] in missing:  # scored as an error of 100%
                r.update(predicted_ms=None, rel_error=1.0, unpredicted_kernel_types=missing[m["name"]])
        by_family = {
            f: _errors([r["rel_error"] for r in rows if r["family"] == f]) for f in ("resnet", "mobilenet", "real")
        }
        kinds.setdefault(key, {})[a.clock] = {
            "command": "python benchmarks/predictor_kinds.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": tname if "/" not in tname else Path(tname).relative_to(ROOT).as_posix(),
            "kind": kind.key,
            "device": device,
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "calibration_models": len(calib),
            "calibration_seed": a.seed,
            "fit": pred.fit_quality,
            "build_seconds": round(build_s, 1),
            "held_out": _errors([r["rel_error"] for r in rows]),
            "by_family": by_family,
            "rows": rows,
        }
        RESULT.write_text(json.dumps(doc, indent=2) + "\n")  # after each kind: a finished kind survives
        h = kinds[key][a.clock]["held_out"]
        fam = ", ".join(f"{f} {100 * v['within_10pct']:.0f}%" for f, v in by_family.items())
        print(f"{key} [{a.clock}]: held-out {h['models']}: within ±10% {100 * h['within_10pct']:.0f}% ({fam}), "
              f"median |error| {100 * h['median_abs_rel_error']:.1f}%, p90 {100 * h['p90_abs_rel_error']:.1f}%",
              flush=True)  # fmt: skip
    return 0


def search(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import edgekd
    from edgekd.data.sources import FASHION_MNIST_SUBSET
    from edgekd.models import zoo
    from edgekd.stages.search.space import MobileNetSpace

    tname, kind = KINDS[a.kind]
    folder = Path(a.work_dir) / a.kind
    pfile = folder / f"predictor.{a.clock}.json"
    if not pfile.is_file():
        raise SystemExit(f"{pfile} missing: run the measure step for {a.kind} first")
    target = _target(tname, a.threads)
    target.latency, target.predictor = "predictor", {kind.key: str(pfile.resolve())}
    meta = json.loads((ROOT / "examples/fashion-mnist/teacher.json").read_text())
    teacher = zoo.build(meta["arch"], meta["params"])
    teacher.load_state_dict(torch.load(ROOT / "examples/fashion-mnist/teacher.pt", weights_only=True))
    data = np.load(FASHION_MNIST_SUBSET)
    xs = torch.as_tensor(data["x_train"][:128], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    norm = meta["normalize"]
    xs = (xs - norm["mean"][0]) / norm["std"][0]
    ys = torch.as_tensor(data["y_train"][:128]).long()
    batches = [(xs[:64], ys[:64]), (xs[64:], ys[64:])]
    space = MobileNetSpace(type="mobilenet")
    rng = random.Random(a.seed + 100)
    cands: list[Any] = []
    seen: set[tuple[int, ...]] = set()
    while len(cands) < a.candidates:
        c = space.sample(rng)
        if c not in seen:
            seen.add(c)
            cands.append(space.params(c, 1, 10))
    models = [zoo.build("mobilenet", p).eval() for p in cands]
    from edgekd.latency.predictor.model import LatencyPredictor

    pred = LatencyPredictor.load(pfile)
    settings = ArtifactSettings.of(target)
    predicted = sorted(pred.predict_module(m, (1, 28, 28), settings).p50_ms for m in models)
    budgets = [round(float(np.percentile(predicted, q)), 3) for q in (30, 60)]
    out = []
    for budget in budgets:
        t0 = time.perf_counter()
        ranking = edgekd.search(models, target=target, teacher=teacher, batches=batches, proxy="diswot",
                                budget={"latency_ms": budget}, precision=kind.precision)  # fmt: skip
        chosen = ranking.chosen
        row: dict[str, Any] = {"budget_ms": budget, "search_seconds": round(time.perf_counter() - t0, 1)}
        if chosen is None:
            row["chosen"] = None
        else:
            path = write_artifact(models[chosen["index"]], (1, 28, 28), kind, folder / f"chosen-{budget}", settings)
            measured, spread, device = measure_files(target, [path], a.repeats, runs=a.runs, clock=a.clock)
            row.update(
                chosen={"index": chosen["index"], "params": cands[chosen["index"]], "score": chosen["score"]},
                predicted_ms=chosen["latency_ms"], measured_p50_ms=measured[0], measurement_spread=spread[0],
                within_budget=measured[0] <= budget, device=device,
            )  # fmt: skip
        out.append(row)
        print(f"budget {budget} ms: chosen {row.get('chosen', {}) and row['chosen']['index']}, predicted "
              f"{row.get('predicted_ms')}, measured {row.get('measured_p50_ms')}, within {row.get('within_budget')}",
              flush=True)  # fmt: skip
    doc = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    doc.setdefault("kinds_search", {})[f"{a.kind}-{a.clock}"] = {
        "command": "python benchmarks/predictor_kinds.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": Path(tname).relative_to(ROOT).as_posix() if "/" in tname else tname,
        "predictor": pfile.name,
        "candidates": len(models),
        "budgets_from": "30th and 60th percentile of the candidates' predicted latency",
        "runs": out,
    }
    RESULT.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("write", "measure", "search"))
    ap.add_argument("--kind", default="tflite-int8", help="search: the kind whose predictor sets the budget")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--models", type=int, default=100, help="calibration models per kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("thread", "wall"), default="thread")
    ap.add_argument("--candidates", type=int, default=20, help="search: MobileNet-space candidates ranked")
    a = ap.parse_args()
    return {"write": write, "measure": measure, "search": search}[a.step](a)


if __name__ == "__main__":
    raise SystemExit(main())
