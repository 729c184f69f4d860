"""Training through its real command line (train_mnist.py) on a slice of MNIST: what it writes
beside the model, that the same seed gives the same model, and the training images held out."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mnist_service import normalise
from mnist_service.classifier import Classifier
from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_mnist.py", "--epochs", "1", "--limit", "1500", *args],
                          cwd=ROOT, capture_output=True, text=True)


def train(folder, seed: int, *args: str) -> dict:
    out = folder / f"seed-{seed}" / "mnist-cnn.keras"
    done = run("--seed", str(seed), "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    assert f"training report (learning curves, confusion matrix, misclassified digits) in {out.with_suffix('')}" \
        ".report.html" in done.stdout
    return {**json.loads(out.with_suffix(".json").read_text()), "stdout": done.stdout, "out": out}


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> dict:
    return train(tmp_path_factory.mktemp("a"), 5)


def test_the_same_seed_gives_the_same_model_and_another_seed_another(first, tmp_path):
    again, other = train(tmp_path / "b", 5), train(tmp_path / "c", 6)
    assert again["litert"]["int8"]["sha256"] == first["litert"]["int8"]["sha256"]
    assert again["litert"]["float32"]["sha256"] == first["litert"]["float32"]["sha256"]
    for figure in ("test_accuracy", "keras_test_accuracy"):
        assert again[figure] == first[figure]
    assert other["litert"]["float32"]["sha256"] != first["litert"]["float32"]["sha256"]
    assert "holdout_accuracy" not in first
    report = (first["out"].parent / first["report"]).read_text(encoding="utf-8")
    wrong = round((1 - first["test_accuracy"]) * first["test_examples"])
    assert f"{wrong} of 10000 test digits wrong" in report and "seed 5" in report


def test_training_images_held_out_are_evaluated_as_served(first, mnist, tmp_path):
    held = train(tmp_path, 5, "--holdout", "2000")
    served = Classifier.load(held["out"]).predict(normalise.normalise_stack(mnist.x_train[-2000:]))
    assert held["holdout_examples"] == 2000
    assert held["holdout_accuracy"] == round(float(np.mean(served.argmax(axis=1) == mnist.y_train[-2000:])), 6)
    assert "on the 2000 training images held out" in held["stdout"]
    report = (held["out"].parent / held["report"]).read_text(encoding="utf-8")
    assert f"{100 * held['holdout_accuracy']:.2f} % (2000 images)" in report
    # The first 1,500 images are trained on either way: the same model.
    assert held["litert"]["int8"]["sha256"] == first["litert"]["int8"]["sha256"]
    refused = run("--holdout", "60000", "--out", str(tmp_path / "none" / "mnist-cnn.keras"))
    assert refused.returncode == 2 and "--holdout must be from 0 to 59999" in refused.stderr
