"""The training-time augmentation (mnist_service.augmentation): what it does to the digits a model
trains on, measured on MNIST images normalised as uploads are."""

import numpy as np
import pytest

from mnist_service import model_input, normalise
from mnist_service.augmentation import ROTATION, SHIFT, ZOOM, RandomAffine


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    return model_input.to_model_input(normalise.normalise_stack(mnist.x_train[:500]))


def augment(images, seed=1, rotation=ROTATION, zoom=ZOOM, shift=SHIFT, training=True) -> np.ndarray:
    return np.asarray(RandomAffine(rotation, zoom, shift, seed)(images, training=training))


def centres(images: np.ndarray) -> np.ndarray:
    """Each image's centre of mass, (row, column)."""
    ink = images[..., 0]
    rows, columns = np.indices(ink.shape[1:])
    return np.stack([(ink * rows).sum(axis=(1, 2)), (ink * columns).sum(axis=(1, 2))], axis=1) / \
        ink.sum(axis=(1, 2))[:, None]


def test_images_pass_unchanged_outside_training_and_with_no_change_drawn(digits):
    assert np.array_equal(augment(digits, training=False), digits)
    assert np.array_equal(augment(digits, rotation=0, zoom=0, shift=0), digits)


def test_the_same_seed_gives_the_same_images_and_another_seed_others(digits):
    first = augment(digits, seed=3)
    assert np.array_equal(augment(digits, seed=3), first)
    assert not np.allclose(augment(digits, seed=4), first)
    assert first.min() >= 0 and first.max() <= 1


def test_shifts_move_each_digit_within_the_bound_both_ways(digits):
    moved = centres(augment(digits, rotation=0, zoom=0)) - centres(digits)
    bound = SHIFT * 28
    assert np.abs(moved).max() <= bound + 0.05
    assert moved.min() < -bound / 2 and moved.max() > bound / 2


def test_rotation_and_zoom_turn_and_scale_each_digit_about_its_frame(digits):
    turned = augment(digits, shift=0)
    # The centre of mass stays near the frame's centre; the ink's spread changes by the zoom at most.
    assert np.abs(centres(turned) - centres(digits)).max() < 1.5
    spread = np.sqrt(turned.sum(axis=(1, 2, 3)) / digits.sum(axis=(1, 2, 3)))
    assert spread.min() > 1 - ZOOM - 0.05 and spread.max() < 1 + ZOOM + 0.05
    assert not np.allclose(turned, digits)


def test_one_resample_keeps_the_strokes_sharp(digits):
    """Rotation, zoom and shift are one bilinear resample: the augmented digits keep most of their
    energy (the sum of squared pixels), where three resamples in a row blur it away."""
    kept = (augment(digits) ** 2).sum() / (digits ** 2).sum()
    assert kept > 0.85
