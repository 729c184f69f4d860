"""The answer built from a model's probabilities: digit, confidence and the `uncertain` flag."""

import numpy as np

from mnist_service import answers

METADATA = {"name": "mnist-cnn", "version": "v1"}


def answer(probabilities, uncertain_below=0.8):
    return answers.answer(np.asarray(probabilities, np.float32), METADATA, uncertain_below)


def test_a_clear_answer_is_not_uncertain():
    result = answer([0.01] * 9 + [0.91])
    assert result["digit"] == 9 and result["confidence"] == np.float32(0.91)
    assert result["uncertain"] is False
    assert result["model"] == "mnist-cnn" and result["model_version"] == "v1"


def test_a_low_top_probability_is_flagged_uncertain():
    result = answer([0.45, 0.40] + [0.15 / 8] * 8)
    assert result["digit"] == 0 and result["uncertain"] is True


def test_the_threshold_is_uncertain_below():
    assert answer([0.45, 0.40] + [0.15 / 8] * 8, uncertain_below=0.5)["uncertain"] is True
    assert answer([0.55, 0.30] + [0.15 / 8] * 8, uncertain_below=0.5)["uncertain"] is False
