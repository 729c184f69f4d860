"""Write the sample digit images in var/data/ (sample-0.png ... sample-9.png).

Each is the most typical image of that digit in the MNIST *test* split (the one nearest the mean
of all that digit's test images, so that the samples are plainly written digits, not the odd ones
a test split also holds), saved as a 28x28 grayscale PNG exactly as MNIST stores it (white digit
on black). Run: python -m tools.make_samples [--data DIR] (make samples)
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_service import mnist_data

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "var" / "data"


def sample_indices(images, labels) -> dict[int, int]:
    """The index of the most typical image of each digit 0-9: nearest that digit's mean image."""
    indices = {}
    for digit in range(10):
        (positions,) = np.nonzero(labels == digit)
        pixels = images[positions].reshape(len(positions), -1).astype(np.float64)
        distances = ((pixels - pixels.mean(axis=0)) ** 2).sum(axis=1)
        indices[digit] = int(positions[distances.argmin()])
    return indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of the MNIST IDX .gz files (as for train_mnist.py)")
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args()
    data = mnist_data.load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for digit, index in sample_indices(data.x_test, data.y_test).items():
        path = args.out / f"sample-{digit}.png"
        Image.fromarray(data.x_test[index]).save(path, optimize=True)
        print(f"{path}: test image #{index}")


if __name__ == "__main__":
    main()
