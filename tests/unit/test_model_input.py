"""The one input definition: scale, polarity and shape, the same for training and serving."""

import numpy as np
import pytest

from mnist_service import model_input, normalise
from tools.make_samples import sample_indices


def test_scale_is_zero_to_one_float32():
    pixels = np.array([[0, 51, 255] + [0] * 25] * 28, dtype=np.uint8)
    batch = model_input.to_model_input(pixels)
    assert batch.dtype == np.float32
    assert batch.shape == (1, 28, 28, 1)
    assert batch[0, 0, :3, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_a_stack_keeps_its_length_and_order():
    stack = np.stack([np.full((28, 28), value, np.uint8) for value in (0, 255, 128)])
    batch = model_input.to_model_input(stack)
    assert batch.shape == (3, 28, 28, 1)
    assert batch[:, 0, 0, 0].tolist() == pytest.approx([0.0, 1.0, 128 / 255])


def test_float_input_is_refused_so_nothing_is_scaled_twice():
    with pytest.raises(TypeError, match="uint8"):
        model_input.to_model_input(np.zeros((28, 28), np.float32))


@pytest.mark.parametrize("shape", [(27, 28), (28, 28, 3), (2, 2, 28, 28), (784,)])
def test_wrong_shapes_are_refused(shape):
    with pytest.raises(ValueError):
        model_input.to_model_input(np.zeros(shape, np.uint8))


def test_a_model_trained_on_another_definition_is_refused():
    model_input.check_spec(dict(model_input.SPEC))
    with pytest.raises(ValueError, match="trained on input"):
        model_input.check_spec({**model_input.SPEC, "scale": [0, 255]})


def test_samples_are_white_digits_on_black(samples):
    """The samples (and MNIST) have the polarity the definition states: ink bright, border dark."""
    for path in samples.values():
        batch = model_input.to_model_input(normalise.upload_to_pixels(path.read_bytes()))[0, :, :, 0]
        border = np.concatenate([batch[0], batch[-1], batch[:, 0], batch[:, -1]])
        assert border.max() == 0.0, path.name
        assert batch[8:20, 8:20].max() > 0.9, path.name


def test_an_upload_becomes_exactly_the_input_training_used(mnist, samples):
    """A sample PNG, through the serving path, gives the very array training built for that image."""
    indices = sample_indices(mnist.x_test, mnist.y_test)
    for digit, path in samples.items():
        served = model_input.to_model_input(normalise.upload_to_pixels(path.read_bytes()))
        trained = model_input.to_model_input(normalise.normalise_stack(mnist.x_test[[indices[digit]]]))
        np.testing.assert_array_equal(served, trained)
