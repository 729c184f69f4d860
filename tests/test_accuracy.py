"""Full-accuracy check of the real model (the one `make serve` and the Docker image use).

Marked `accuracy`: `make test` runs it after training the model if var/data/ has none;
`make test-fast` leaves it out.
"""

import numpy as np
import pytest

from classifier import Classifier
from train_mnist import DEFAULT_OUT

REQUIRED_ACCURACY = 0.992


@pytest.mark.accuracy
def test_the_served_model_reaches_the_accuracy_bar_on_the_full_test_split(mnist):
    if not DEFAULT_OUT.exists():
        pytest.fail(f"{DEFAULT_OUT} is missing: train it first (make model)")
    classifier = Classifier.load(DEFAULT_OUT)
    predicted = classifier.predict(mnist.x_test).argmax(axis=1)
    accuracy = float(np.mean(predicted == mnist.y_test))
    print(f"test accuracy through the serving path: {accuracy:.4f} on {len(predicted)} images")
    assert accuracy >= REQUIRED_ACCURACY
    assert classifier.metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert classifier.metadata["data_sha256"] == mnist.content_sha256()
