"""The answer built from a model's probabilities (digit, confidence and the `uncertain` flag),
and the three inference engines."""

import io

import numpy as np
import pytest
from PIL import Image

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


def upload_pixels(samples) -> np.ndarray:
    return np.stack([preprocess.upload_to_pixels(path.read_bytes()) for path in samples.values()])


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_litert_float32_gives_tensorflows_probabilities_at_any_batch_size(small_models, samples, name):
    """LiteRT runs the converted model; with float32 weights it must answer what TensorFlow answers."""
    pixels = upload_pixels(samples)
    litert = Classifier.load(small_models / f"{name}.keras", engine="litert-float32")
    tensorflow = Classifier.load(small_models / f"{name}.keras", engine="tensorflow")
    assert (litert.engine, tensorflow.engine) == ("litert-float32", "tensorflow")
    for batch in (pixels, pixels[:1], pixels[3:6], pixels):  # the interpreter is resized each time
        np.testing.assert_allclose(litert.predict(batch), tensorflow.predict(batch), atol=1e-6)
    assert litert.predict(pixels).argmax(axis=1).tolist() == tensorflow.predict(pixels).argmax(axis=1).tolist()


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_int8_weights_give_float32s_digits_and_nearly_its_probabilities(small_models, samples, mnist, name):
    """The default engine quantises the weights to int8: on the samples and 500 test digits it
    picks the digit float32 picks (all but at most 1%), its probabilities stay near float32's, and
    an image gets the same answer, bit for bit, alone as in any batch."""
    int8 = Classifier.load(small_models / f"{name}.keras")
    float32 = Classifier.load(small_models / f"{name}.keras", engine="litert-float32")
    assert int8.engine == "litert-int8" and int8.devices == ["LiteRT XNNPACK (CPU), int8 weights"]
    pixels = upload_pixels(samples)
    assert int8.predict(pixels).argmax(axis=1).tolist() == float32.predict(pixels).argmax(axis=1).tolist()
    digits = preprocess.normalise_stack(mnist.x_test[:500])
    quantised, reference = int8.predict(digits), float32.predict(digits)
    assert np.mean(quantised.argmax(axis=1) == reference.argmax(axis=1)) >= 0.99
    assert np.abs(quantised - reference).mean() < 0.01
    np.testing.assert_allclose(quantised.sum(axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([int8.predict(digit[None]) for digit in digits[:16]])
    np.testing.assert_array_equal(int8.predict(digits[:16]), alone)
    np.testing.assert_array_equal(int8.predict(np.concatenate([digits[:1], digits[100:140]]))[0], alone[0])


def test_the_interpreter_runs_a_batch_larger_than_its_slice_in_slices_with_the_same_answers(
        small_model, mnist, monkeypatch):
    """LITERT_SLICE_SIZE: 10 images with slices of 4 are three invocations, and each image's
    probabilities are bit for bit what it gets alone."""
    from ai_edge_litert.interpreter import Interpreter

    model = Classifier.load(small_model)
    digits = preprocess.normalise_stack(mnist.x_test[:10])
    alone = np.concatenate([model.predict(digit[None]) for digit in digits])
    monkeypatch.setattr(classifier, "LITERT_SLICE", 4)
    invoke, invocations = Interpreter.invoke, []
    monkeypatch.setattr(Interpreter, "invoke", lambda self: invocations.append(1) or invoke(self))
    np.testing.assert_array_equal(model.predict(digits), alone)
    assert len(invocations) == 3


def test_a_slice_of_no_images_is_refused_by_name(small_model, monkeypatch):
    monkeypatch.setattr(classifier, "LITERT_SLICE", 0)
    with pytest.raises(ValueError, match="LITERT_SLICE_SIZE is 0; it is at least 1"):
        Classifier.load(small_model)


def test_uploads_are_classified_in_order_with_an_error_in_place_of_each_unreadable_one(small_model, samples):
    model = Classifier.load(small_model)
    blank = io.BytesIO()
    Image.new("L", (28, 28), 255).save(blank, "PNG")
    results = model.classify_uploads([samples[3].read_bytes(), b"not an image", blank.getvalue(), samples[8].read_bytes()])
    assert isinstance(results[1], preprocess.UnreadableImage) and isinstance(results[2], preprocess.NoDigitFound)
    expected = model.predict(upload_pixels({3: samples[3], 8: samples[8]}))
    np.testing.assert_array_equal(np.stack([results[0], results[3]]), expected)
    assert model.classify_uploads([]) == []


def test_an_unknown_engine_is_refused_by_name(small_model):
    with pytest.raises(ValueError, match='INFERENCE_ENGINE is "onnx"; it is one of litert-int8, litert-float32, tensorflow'):
        Classifier.load(small_model, engine="onnx")
