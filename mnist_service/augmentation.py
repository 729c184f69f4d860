"""The training-time augmentation: random changes that real uploads still show after normalisation,
as Keras layers in front of the model while it trains (:func:`trainer`), never in the saved model.

Small rotations, scale changes and shifts, Keras' own random image layers. They run inside the
training step, on the step's own seeded random generators, so with op determinism on (training.py)
the same seed gives the same batches and the same model; augmentation in a parallel ``tf.data`` map
draws its random numbers in whatever order its threads run. Thinner or thicker strokes (a random
blend towards each image's dilation or erosion) are left out: on a short schedule they cost the
CNN about 0.08 points of test accuracy.
"""

from __future__ import annotations

import keras
from keras import layers

ROTATION = 0.025  # of a full turn: +-9 degrees
ZOOM = 0.1  # +-10% scale
SHIFT = 0.06  # of the side: +-1.7 px


def layers_for(seed: int) -> list:
    """The augmentation layers, each seeded from ``seed``."""
    return [
        layers.RandomRotation(ROTATION, fill_mode="constant", seed=seed),
        layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 1),
        layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed + 2),
    ]


def trainer(model, seed: int):
    """The model with the augmentation in front of it: what is trained. The model itself (its
    layers shared, so trained with it) is what is saved and served."""
    return keras.Sequential([keras.Input(shape=model.input_shape[1:]), *layers_for(seed), model],
                            name=f"{model.name}_training")
