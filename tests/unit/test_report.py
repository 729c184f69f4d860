"""The training report (mnist_service.report): what it counts and what a person sees in it."""

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from mnist_service import report

METADATA = {
    "name": "mnist-cnn", "version": "20261202T120000Z", "trained_at": "2026-12-02T12:00:00+00:00",
    "test_accuracy": 0.995, "keras_test_accuracy": 0.9951, "epochs": 3, "batch_size": 128, "seed": 7,
    "train_examples": 60000, "training_seconds": 90.0, "seconds_per_epoch": 30.0, "parameters": 1234,
    "versions": {"python": "3.11.7", "keras": "3"}, "data_sha256": "ab" * 32,
}
HISTORY = {"loss": [0.5, 0.2, 0.1], "accuracy": [0.8, 0.9, 0.95], "test_loss": [0.3, 0.1, 0.05],
           "test_accuracy": [0.9, 0.95, 0.98], "learning_rate": [1e-3, 5e-4, 0.0]}


def predictions(labels: np.ndarray, wrong: dict[int, int]) -> np.ndarray:
    """One-hot-ish probabilities that say each label, except at ``wrong``'s indices (index -> guess)."""
    guesses = labels.copy()
    for index, guess in wrong.items():
        guesses[index] = guess
    probabilities = np.full((len(labels), 10), 0.01, dtype=np.float32)
    probabilities[np.arange(len(labels)), guesses] = 0.91
    return probabilities


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_the_confusion_matrix_counts_true_digits_by_row_and_guesses_by_column():
    matrix = report.confusion(np.array([0, 0, 1, 7, 7, 7]), np.array([0, 6, 1, 7, 1, 7]))
    assert matrix.sum() == 6 and matrix[0, 0] == 1 and matrix[0, 6] == 1 and matrix[7, 1] == 1 and matrix[7, 7] == 2


def test_the_report_is_one_self_contained_page_that_names_every_mistake():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    wrong = {3: (labels[3] + 1) % 10, 40: (labels[40] + 2) % 10, 41: (labels[41] + 5) % 10}
    pixels = rng.integers(0, 256, (500, 28, 28), dtype=np.uint8)
    page = report.render(METADATA, HISTORY, pixels, labels, predictions(labels, wrong))
    assert "3 of 500 test digits wrong" in page
    images = Images()
    images.feed(page)
    # learning curves, confusion matrix, the mistakes: three PNGs inline, nothing fetched elsewhere
    assert len(images.sources) == 3 and all(src.startswith("data:image/png;base64,") for src in images.sources)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    for source in images.sources:
        picture = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert picture.format == "PNG" and picture.width > 300
    per_digit = re.search(r"<tr><th>accuracy \(%\)</th>(.*?)</tr>", page).group(1)
    assert per_digit.count("<td>") == 10


def test_a_report_without_mistakes_says_so_and_a_long_list_is_cut_to_the_most_confident():
    labels = np.arange(400) % 10
    pixels = np.zeros((400, 28, 28), dtype=np.uint8)
    perfect = report.render(METADATA, HISTORY, pixels, labels, predictions(labels, {}))
    assert "0 of 400 test digits wrong" in perfect and "<p>None.</p>" in perfect
    everything_wrong = predictions(labels, {i: (labels[i] + 1) % 10 for i in range(400)})
    cut = report.render(METADATA, HISTORY, pixels, labels, everything_wrong)
    assert f"The {report.MAX_MISTAKES} most confident of 400 mistakes." in cut
