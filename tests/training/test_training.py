"""Training through its real command line (train_mnist.py) on a slice of MNIST: what it writes
beside the model, and that the same seed gives the same model."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def train(folder, seed: int) -> dict:
    out = folder / f"seed-{seed}" / "mnist-cnn.keras"
    done = subprocess.run([sys.executable, "train_mnist.py", "--epochs", "1", "--limit", "1500", "--seed", str(seed),
                           "--out", str(out)], cwd=ROOT, check=True, capture_output=True, text=True)
    assert f"training report (learning curves, confusion matrix, misclassified digits) in {out.with_suffix('')}" \
        ".report.html" in done.stdout
    return json.loads(out.with_suffix(".json").read_text())


def test_the_same_seed_gives_the_same_model_and_another_seed_another(tmp_path):
    first, again, other = train(tmp_path / "a", 5), train(tmp_path / "b", 5), train(tmp_path / "c", 6)
    assert again["litert"]["int8"]["sha256"] == first["litert"]["int8"]["sha256"]
    assert again["litert"]["float32"]["sha256"] == first["litert"]["float32"]["sha256"]
    for figure in ("test_accuracy", "keras_test_accuracy"):
        assert again[figure] == first[figure]
    assert other["litert"]["float32"]["sha256"] != first["litert"]["float32"]["sha256"]
    report = (tmp_path / "a" / "seed-5" / first["report"]).read_text(encoding="utf-8")
    wrong = round((1 - first["test_accuracy"]) * first["test_examples"])
    assert f"{wrong} of 10000 test digits wrong" in report and "seed 5" in report
