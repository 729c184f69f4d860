"""The three inference engines, and a batch of uploads and tensors classified in one model call."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from mnist_service import errors, model_input, normalise
from mnist_service.classifier import Classifier
from mnist_service.settings import Settings, SettingsError
from tools.realistic_uploads import encode


def load(path, **settings) -> Classifier:
    return Classifier.load(path, settings=Settings(**settings))


def upload_pixels(samples) -> np.ndarray:
    return np.stack([normalise.upload_to_pixels(path.read_bytes()) for path in samples.values()])


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_litert_float32_gives_tensorflows_probabilities_at_any_batch_size(small_models, samples, name):
    """LiteRT runs the converted model; with float32 weights it must answer what TensorFlow answers."""
    pixels = upload_pixels(samples)
    litert = load(small_models / f"{name}.keras", engine="litert-float32")
    tensorflow = load(small_models / f"{name}.keras", engine="tensorflow")
    assert (litert.engine.name, tensorflow.engine.name) == ("litert-float32", "tensorflow")
    for batch in (pixels, pixels[:1], pixels[3:6], pixels):  # the interpreter is resized each time
        np.testing.assert_allclose(litert.predict(batch), tensorflow.predict(batch), atol=1e-6)
    assert litert.predict(pixels).argmax(axis=1).tolist() == tensorflow.predict(pixels).argmax(axis=1).tolist()


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_int8_weights_give_float32s_digits_and_nearly_its_probabilities(small_models, samples, mnist, name):
    """The default engine quantises the weights to int8: on the samples and 500 test digits it
    picks the digit float32 picks (all but at most 1%), its probabilities stay near float32's, and
    an image gets the same answer, bit for bit, alone as in any batch."""
    int8 = load(small_models / f"{name}.keras")
    float32 = load(small_models / f"{name}.keras", engine="litert-float32")
    assert int8.engine.name == "litert-int8" and int8.engine.devices == ["LiteRT XNNPACK (CPU), int8 weights"]
    pixels = upload_pixels(samples)
    assert int8.predict(pixels).argmax(axis=1).tolist() == float32.predict(pixels).argmax(axis=1).tolist()
    digits = normalise.normalise_stack(mnist.x_test[:500])
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

    model = load(small_model, litert_slice_size=4)
    digits = normalise.normalise_stack(mnist.x_test[:10])
    alone = np.concatenate([model.predict(digit[None]) for digit in digits])
    invoke, invocations = Interpreter.invoke, []
    monkeypatch.setattr(Interpreter, "invoke", lambda self: invocations.append(1) or invoke(self))
    np.testing.assert_array_equal(model.predict(digits), alone)
    assert len(invocations) == 3


def test_a_slice_of_no_images_is_refused_by_name():
    with pytest.raises(SettingsError, match="LITERT_SLICE_SIZE is 0; it is a whole number of at least 1"):
        Settings(litert_slice_size=0)


def test_uploads_are_classified_in_order_with_an_error_in_place_of_each_unreadable_one(small_model, samples):
    model = load(small_model)
    blank = encode(Image.new("L", (28, 28), 255))
    results = model.classify([samples[3].read_bytes(), b"not an image", blank, samples[8].read_bytes()])
    assert isinstance(results[1], errors.UnreadableImage) and isinstance(results[2], errors.NoDigitFound)
    expected = model.predict(upload_pixels({3: samples[3], 8: samples[8]}))
    np.testing.assert_array_equal(np.stack([results[0], results[3]]), expected)
    assert model.classify([]) == []


def test_uploads_and_tensors_in_one_batch_get_what_each_gets_alone(small_model, samples, mnist):
    """TF Serving's numeric instances are model input given as tensors; mixed with uploads in one
    batch (as the micro-batcher mixes requests), each item's probabilities are its own, bit for bit."""
    model = load(small_model)
    tensors = list(model_input.to_model_input(normalise.normalise_stack(mnist.x_test[:3])))
    uploads = [samples[digit].read_bytes() for digit in (4, 9)]
    items = [tensors[0], uploads[0], b"not an image", tensors[1], uploads[1], tensors[2]]
    results = model.classify(items)
    assert isinstance(results[2], errors.UnreadableImage)
    for item, result in zip(items, results):
        if isinstance(item, bytes) and item in uploads:
            np.testing.assert_array_equal(result, model.classify([item])[0])
        elif not isinstance(item, bytes):
            np.testing.assert_array_equal(result, model.predict_inputs(item[None])[0])


def test_a_settings_object_is_passed_down_to_the_batcher(small_model):
    """The micro-batcher takes its limits from the settings the classifier was loaded with."""
    model = load(small_model, batch_max_size=3, batch_max_wait_ms=7)
    assert (model.batcher.max_batch, model.batcher.max_wait) == (3, 0.007)
    assert dataclasses.replace(model.settings, batch_max_size=3) == model.settings
