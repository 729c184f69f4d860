"""Full-accuracy checks of the real models (the ones `make serve` and the Docker image use).

Marked `accuracy`: `make test` runs them after training the model if var/data/ has none;
`make test-fast` leaves them out.
"""

import numpy as np
import pytest

import preprocess
import realistic_uploads
from classifier import Classifier
from train_mnist import KINDS

# On the MNIST test split. The default training reaches 99.46-99.59% (99.59%, 99.53%, 99.46% and
# 99.51% in four runs; training is not bit-for-bit deterministic), and the Docker build itself refuses
# a model under 99.5% (MIN_ACCURACY). This check guards against a broken model or serving path
# without failing CI on that run-to-run spread.
REQUIRED_ACCURACY = 0.992
REQUIRED_UPLOAD_ACCURACY = 0.97  # on each style of realistic uploads
UPLOADS_PER_STYLE = 300
# The book's dense network: 98.68-98.81% in the three runs measured (see the README); it is there
# to be compared with the CNN on the drawing page, so its bar is the book's, not the CNN's.
REQUIRED_DENSE_ACCURACY = 0.978


def load(kind: str) -> Classifier:
    path = KINDS[kind].default_out
    if not path.exists():
        pytest.fail(f"{path} is missing: train it first (make model)")
    return Classifier.load(path)


@pytest.fixture(scope="module")
def classifier():
    return load("cnn")


@pytest.mark.accuracy
def test_the_served_model_reaches_the_accuracy_bar_on_the_full_test_split(classifier, mnist):
    """All 10,000 test images, normalised as uploads are, through the serving code."""
    predicted = classifier.predict(preprocess.normalise_stack(mnist.x_test)).argmax(axis=1)
    accuracy = float(np.mean(predicted == mnist.y_test))
    print(f"test accuracy through the serving path: {accuracy:.4f} on {len(predicted)} images")
    assert accuracy >= REQUIRED_ACCURACY
    assert classifier.metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert classifier.metadata["data_sha256"] == mnist.content_sha256()


@pytest.mark.accuracy
def test_the_served_model_reads_realistic_uploads(classifier, mnist):
    """Paper scans, canvas exports, small digits on pages, colour photos (from test digits training
    never saw) and printed fonts, as encoded files through the upload path: each style >= 97%."""
    accuracy = realistic_uploads.evaluate(
        lambda batch: classifier.predict(batch).argmax(axis=1), mnist.x_test, mnist.y_test, UPLOADS_PER_STYLE)
    print("realistic uploads:", ", ".join(f"{style} {value:.2%}" for style, value in accuracy.items()))
    assert len(accuracy) == 5
    assert all(value >= REQUIRED_UPLOAD_ACCURACY for value in accuracy.values()), accuracy


@pytest.mark.accuracy
def test_the_dense_model_reaches_its_accuracy_bar(mnist):
    dense = load("dense")
    predicted = dense.predict(preprocess.normalise_stack(mnist.x_test)).argmax(axis=1)
    accuracy = float(np.mean(predicted == mnist.y_test))
    print(f"dense model test accuracy through the serving path: {accuracy:.4f}")
    assert accuracy >= REQUIRED_DENSE_ACCURACY
    assert dense.metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
