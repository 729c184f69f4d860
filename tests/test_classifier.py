"""The answer built from a model's probabilities (digit, confidence and the `uncertain` flag),
and the two inference engines."""

import numpy as np
import pytest

import classifier
import preprocess
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


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_both_engines_give_the_same_probabilities_at_any_batch_size(small_models, samples, name):
    """LiteRT (the default) runs the converted model; it must answer what TensorFlow answers."""
    pixels = np.stack([preprocess.upload_to_pixels(path.read_bytes()) for path in samples.values()])
    litert = Classifier.load(small_models / f"{name}.keras", engine="litert")
    tensorflow = Classifier.load(small_models / f"{name}.keras", engine="tensorflow")
    assert (litert.engine, tensorflow.engine) == ("litert", "tensorflow")
    for batch in (pixels, pixels[:1], pixels[3:6], pixels):  # the interpreter is resized each time
        np.testing.assert_allclose(litert.predict(batch), tensorflow.predict(batch), atol=1e-6)
    assert litert.predict(pixels).argmax(axis=1).tolist() == tensorflow.predict(pixels).argmax(axis=1).tolist()


def test_an_unknown_engine_is_refused_by_name(small_model):
    with pytest.raises(ValueError, match='INFERENCE_ENGINE is "onnx"; it is one of litert, tensorflow'):
        Classifier.load(small_model, engine="onnx")
