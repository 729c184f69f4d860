"""The answer built from a model's probabilities: digit, confidence and the `uncertain` flag."""

import numpy as np

import classifier
from classifier import Classifier


def answer(probabilities):
    model = Classifier(metadata={"name": "mnist-cnn", "version": "v1"}, devices=[], infer=None)
    return model.answer(np.asarray(probabilities, np.float32))


def test_a_clear_answer_is_not_uncertain():
    result = answer([0.01] * 9 + [0.91])
    assert result["digit"] == 9 and result["confidence"] == np.float32(0.91)
    assert result["uncertain"] is False


def test_a_low_top_probability_is_flagged_uncertain():
    result = answer([0.45, 0.40] + [0.15 / 8] * 8)
    assert result["digit"] == 0 and result["uncertain"] is True


def test_the_threshold_is_uncertain_below(monkeypatch):
    monkeypatch.setattr(classifier, "UNCERTAIN_BELOW", 0.5)
    assert answer([0.45, 0.40] + [0.15 / 8] * 8)["uncertain"] is True
    assert answer([0.55, 0.30] + [0.15 / 8] * 8)["uncertain"] is False
