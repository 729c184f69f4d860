"""The one definition of what the model takes as input, shared by training and serving.

A model input is a float32 array of shape (N, 28, 28, 1) with values in 0-1, the digit bright
(1.0 = full ink) on a dark (0.0) background, exactly as MNIST stores its digits (0-255, white on
black) divided by 255, framed as MNIST framed its digits (the longer side 20 px, the centre of
mass at (14, 14)). Training and serving both build their inputs with :func:`to_model_input` from
28x28 uint8 pixels that :mod:`mnist_service.normalise` made, so scale, polarity and framing cannot
drift apart. The trained model's metadata records :data:`SPEC`, and the server refuses a model
whose recorded input differs.
"""

from __future__ import annotations

import numpy as np

HEIGHT = WIDTH = 28
CHANNELS = 1
SHAPE = (HEIGHT, WIDTH, CHANNELS)
PIXEL_MAX = 255  # uint8 pixels: 0 = background, 255 = full ink
DIGIT_BOX = 20  # as MNIST: the digit's longer side is scaled to 20 px ...
CENTRE = (14.0, 14.0)  # ... and its centre of mass put here (row, column; measured on MNIST)

SPEC = {
    "shape": list(SHAPE),
    "dtype": "float32",
    "scale": [0.0, 1.0],
    "polarity": "white digit on black background",
    "framing": f"longer side {DIGIT_BOX} px, centre of mass at {CENTRE}",
}


def to_model_input(pixels: np.ndarray) -> np.ndarray:
    """Turn uint8 pixels, one 28x28 image or a stack (N, 28, 28), into model input.

    Only uint8 is accepted: an array that is already float may already be scaled, and scaling it
    twice (or not at all) is the classic train/serve mismatch this function exists to prevent.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"model input is built from uint8 pixels, got {pixels.dtype}")
    if pixels.shape[-2:] != (HEIGHT, WIDTH) or pixels.ndim not in (2, 3):
        raise ValueError(f"expected (28, 28) or (N, 28, 28) pixels, got {pixels.shape}")
    batch = pixels.reshape((-1, *SHAPE))
    return batch.astype(np.float32) / np.float32(PIXEL_MAX)


def check_model_input(batch: np.ndarray) -> np.ndarray:
    """Return ``batch`` if it is model input (float32, (N, 28, 28, 1), finite, 0-1), else raise."""
    if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != SHAPE:
        raise ValueError(f"model input is float32 (N, 28, 28, 1), got {batch.dtype} {batch.shape}")
    if not np.isfinite(batch).all():
        raise ValueError("model input has NaN or infinite values")
    if batch.size and (batch.min() < 0.0 or batch.max() > 1.0):
        raise ValueError(
            f"model input values are 0-1 (pixel / 255), got {batch.min():g} to {batch.max():g}"
        )
    return batch


def check_spec(recorded: dict) -> None:
    """Raise if a model was trained on an input definition other than this one."""
    if recorded != SPEC:
        raise ValueError(f"model was trained on input {recorded}, this code serves {SPEC}")
