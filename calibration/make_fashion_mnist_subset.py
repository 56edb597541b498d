"""Rebuild edgekd/bundled/fashion-mnist-subset.npz (shipped in the wheel): 500 train + 200 test images per class, seed 0.

Run from the repository root with the Debian package dataset-fashion-mnist installed:
    python calibration/make_fashion_mnist_subset.py
"""

import numpy as np

from edgekd.data.idx import load_mnist_dir

raw = load_mnist_dir("/usr/share/datasets/fashion-mnist")
rng = np.random.default_rng(0)


def strat(y, per):
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(10)])
    return np.sort(idx)


tr = strat(raw["y_train"], 500)
te = strat(raw["y_test"], 200)
np.savez_compressed(
    "edgekd/bundled/fashion-mnist-subset.npz",
    x_train=raw["x_train"][tr],
    y_train=raw["y_train"][tr].astype(np.uint8),
    x_test=raw["x_test"][te],
    y_test=raw["y_test"][te].astype(np.uint8),
    train_index=tr,
    test_index=te,
)
print(len(tr), len(te))
