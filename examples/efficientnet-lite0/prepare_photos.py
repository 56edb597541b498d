"""Real photos for the EfficientNet-Lite0 example, offline: crops of the photos scikit-image ships.

    python examples/efficientnet-lite0/prepare_photos.py [--wheel scikit_image-*.whl] [--train 1600 --test 400]

The photos come out of the scikit-image wheel (``pip download --no-deps scikit-image==0.26.0``, a zip; nothing
of scikit-image is installed). Training crops are cut from one set of photos and test crops from *other* photos,
so the held-out measure (top-1 agreement with the teacher) is on photos the student never saw. Crops are random
squares of 35-100% of the photo's short side at a random place, resized to 224x224 (PIL bicubic), half of them
mirrored. Writes ``photos.npz`` (uint8 NCHW ``x_train``, ``x_test``; labels -1: the teacher labels them) next to
this file, with ``photos.json`` (which photo each split used, counts, seed).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
WHEEL = "scikit-image==0.26.0"
#: photos of the real world (textures and scenes included; charts, logos and synthetic images left out)
TRAIN = ["chelsea", "motorcycle_left", "motorcycle_right", "rocket", "hubble_deep_field", "retina", "brick",
         "grass", "camera", "moon", "coins", "horse"]  # fmt: skip
TEST = ["coffee", "astronaut", "gravel", "ihc"]


def _wheel(given: Path | None) -> Path:
    if given is not None:
        return given
    folder = Path(tempfile.mkdtemp(prefix="edgekd-skimage-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(folder)], check=True)
    return next(folder.glob("scikit_image-*.whl"))


def _photos(wheel: Path, names: list[str]) -> dict[str, Image.Image]:
    out = {}
    with zipfile.ZipFile(wheel) as z:
        files = {Path(n).stem: n for n in z.namelist() if n.startswith("skimage/data/") and n[-4:] in (".png", ".jpg")}
        for name in names:
            out[name] = Image.open(io.BytesIO(z.read(files[name]))).convert("RGB")
    return out


def crops(photos: dict[str, Image.Image], n: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    names = sorted(photos)
    x = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        img = photos[names[i % len(names)]]
        w, h = img.size
        side = int(min(w, h) * rng.uniform(0.35, 1.0))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        x[i] = np.asarray(crop).transpose(2, 0, 1)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, default=None, help="a scikit-image wheel (default: pip download it)")
    ap.add_argument("--train", type=int, default=1600)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "photos.npz")
    args = ap.parse_args()
    wheel = _wheel(args.wheel)
    rng = np.random.default_rng(args.seed)
    x_train = crops(_photos(wheel, TRAIN), args.train, rng)
    x_test = crops(_photos(wheel, TEST), args.test, rng)
    unlabelled = np.full
    np.savez(args.out, x_train=x_train, y_train=unlabelled(len(x_train), -1), x_test=x_test,
             y_test=unlabelled(len(x_test), -1))  # fmt: skip
    info = {"wheel": wheel.name, "train_photos": TRAIN, "test_photos": TEST, "train": len(x_train),
            "test": len(x_test), "seed": args.seed, "size": 224}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{args.out}: {len(x_train)} training crops of {len(TRAIN)} photos, {len(x_test)} test crops of "
          f"{len(TEST)} other photos")  # fmt: skip


if __name__ == "__main__":
    main()
