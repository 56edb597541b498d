"""Memory and time of an image-folder compile held in memory vs streamed from disk (``data.stream``).

    python benchmarks/streaming.py [--train 20000 --test 2000 --size 112 --workers 0 2]

Writes real Fashion-MNIST images (the full set from the Debian package, else the bundled subset) as PNG files
into ``runs/streaming-folder/{train,test}/<class>/``, then compiles the same tiny ResNet-8 teacher/student pair
(3 channels, stem stride 4, one distill epoch, then ONNX lowering) from that folder at ``--size``² (PIL
converts to RGB and resizes, so the decoded float32 images take ``N x 3 x size x size x 4`` bytes) once in
memory and once streamed per ``--workers`` value, each in a fresh process, one after the other. Per run: peak
resident memory of the compile process (``getrusage``; DataLoader workers are forks, not counted), seconds per pass
(``baseline`` loads the data and scores the teacher), and whether the student's ONNX file is byte-identical to
the in-memory one. Writes ``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "streaming.json"
FOLDER = ROOT / "runs" / "streaming-folder"
NET = {"depth": 8, "width": 8, "in_channels": 3, "num_classes": 10, "stem_stride": 4}


def prepare(train: int, test: int) -> dict:
    """The PNG folder (rewritten only when its size differs)."""
    import numpy as np
    from PIL import Image

    from edgekd.config.model import DataConfig
    from edgekd.data.sources import fashion_mnist

    stamp = FOLDER / "SIZES.json"
    want = {"train": train, "test": test}
    raw, origin = fashion_mnist(DataConfig(), ROOT)
    if stamp.is_file() and json.loads(stamp.read_text()).get("sizes") == want:
        return {"origin": origin, **want}
    if FOLDER.exists():
        shutil.rmtree(FOLDER)  # another size: no stale files
    for split, n in want.items():
        x, y = raw[f"x_{split}"][:n], raw[f"y_{split}"][:n]
        for cls in range(10):
            (FOLDER / split / f"c{cls}").mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            Image.fromarray(np.asarray(img).reshape(28, 28)).save(FOLDER / split / f"c{label}" / f"{i:05d}.png")
    stamp.write_text(json.dumps({"sizes": want, "origin": origin}))
    return {"origin": origin, **want}


def one(mode: str, size: int, workers: int, work: Path) -> dict:
    """One compile in this process (called in a child): memory, seconds, the student file's sha256."""
    import torch
    import yaml

    import edgekd
    from edgekd.models import zoo

    if work.exists():
        shutil.rmtree(work)  # a fresh compile: no pass may come from the cache of an earlier run
    work.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(zoo.build("resnet", NET).state_dict(), work / "teacher.pt")
    cfg = {
        "name": f"stream-{mode}",
        "seed": 0,
        "teacher": {"arch": "resnet", "params": NET, "checkpoint": "teacher.pt"},
        "student": {"arch": "resnet", "params": {**NET, "width": 4}},
        "data": {"source": "image-folder", "path": str(FOLDER), "input_shape": [3, size, size], "num_classes": 10,
                 "normalize": {"mean": [0.286] * 3, "std": [0.353] * 3}, "val_fraction": 0.1,
                 "stream": mode == "stream", "workers": workers},
        "calibration": {"samples": 64},
        "passes": [{"distill": {"epochs": 1, "batch_size": 128}}, {"lower": {"parity": {"samples": 64}}}],
    }  # fmt: skip
    (work / "model.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    start = time.perf_counter()
    r = edgekd.compile(work / "model.yaml", target="x86-cpu", out=work / "runs", quiet=True)
    wall = time.perf_counter() - start
    res = json.loads(r.result_path.read_text())
    if any(p["status"] != "ran" for p in res["passes"]):
        raise SystemExit(f"{mode}: a pass did not run ({[p['status'] for p in res['passes']]}): not a fresh compile")
    onnx = hashlib.sha256((r.run_dir / "student.onnx").read_bytes()).hexdigest()
    seconds = {p["pass"]: p["seconds"] for p in res["passes"]}  # baseline: data loading and the teacher's accuracy
    return {
        "mode": mode,
        "workers": workers if mode == "stream" else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "compile_seconds": round(wall, 1),
        "distill_seconds": res["student"]["distill"]["seconds"],
        "pass_seconds": seconds,
        "val_accuracy": res["student"]["distill"]["val_accuracy"],
        "test_accuracy_onnx": res["artifacts"]["onnx"]["accuracy"],
        "streamed": res["data"]["streamed"],
        "student_onnx_sha256": onnx,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--one", nargs=3, metavar=("MODE", "WORKERS", "WORK"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.size, int(args.one[1]), Path(args.one[2]))))
        return
    data = prepare(args.train, args.test)
    runs = []
    for mode, workers in [("memory", 0)] + [("stream", w) for w in args.workers]:
        work = ROOT / "runs" / f"streaming-{mode}-{workers}"
        cmd = [sys.executable, __file__, "--size", str(args.size), "--one", mode, str(workers), str(work)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{mode} (workers {workers}) failed:\n{done.stderr[-4000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    memory = runs[0]
    decoded_gb = (data["train"] + data["test"]) * 3 * args.size**2 * 4 / 1e9
    doc = {
        "what": __doc__.split("\n\n")[0],
        "command": "python benchmarks/streaming.py " + " ".join(sys.argv[1:]),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "note": "one run per mode, one after the other; peak_rss_mb is the compile process alone (DataLoader "
        "workers are forked processes sharing its pages)",
        "data": {**data, "input_shape": [3, args.size, args.size], "decoded_float32_gb": round(decoded_gb, 2)},
        "runs": runs,
        "ratios": {
            f"stream_workers_{r['workers']}": {
                "peak_rss_vs_memory": round(r["peak_rss_mb"] / memory["peak_rss_mb"], 3),
                "distill_seconds_vs_memory": round(r["distill_seconds"] / memory["distill_seconds"], 2),
                "compile_seconds_vs_memory": round(r["compile_seconds"] / memory["compile_seconds"], 2),
                "same_student_as_memory": r["student_onnx_sha256"] == memory["student_onnx_sha256"],
            }
            for r in runs[1:]
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["ratios"], indent=1))


if __name__ == "__main__":
    main()
