"""The training-time augmentation: random changes that real uploads still show after normalisation,
as a Keras layer in front of the model while it trains (:func:`trainer`), never in the saved model.

Small rotations, scale changes and shifts, drawn per image and applied as one affine transform
(``keras.ops.image.affine_transform``): one bilinear resample rather than Keras' three random
image layers one after the other. Each resample blurs the strokes: on MNIST digits the three keep
80% of an image's energy (the sum of its squared pixels), the one 90%, so the training digits stay
closer to the sharp ones served; one resample also costs less a step. The layer draws from its own
seeded generator inside the training step, so with op determinism on (training.py) the same seed
gives the same batches and the same model; augmentation in a parallel ``tf.data`` map draws its
random numbers in whatever order its threads run. Thinner or thicker strokes (a random blend
towards each image's dilation or erosion) are left out: on a short schedule they cost the CNN
about 0.08 points of test accuracy.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

ROTATION = 0.025  # of a full turn: +-9 degrees
ZOOM = 0.1  # +-10% scale
SHIFT = 0.06  # of the side: +-1.7 px


class RandomAffine(layers.Layer):
    """Each image rotated by up to ``rotation`` of a full turn and scaled by up to ``zoom`` about its
    centre, then shifted by up to ``shift`` of its side along each axis (uniform draws); what comes
    in from outside the image is black. Only while training: otherwise the images pass unchanged."""

    def __init__(self, rotation: float, zoom: float, shift: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift = rotation, zoom, shift
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

        def uniform(bound):
            return keras.random.uniform((count,), -bound, bound, seed=self.generator)

        angle = uniform(self.rotation) * 2 * math.pi
        scale = 1 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift) * width, uniform(self.shift) * height
        # affine_transform maps each output pixel to the input point it samples:
        # scale * rotation about the centre, less the shift.
        cos, sin = scale * ops.cos(angle), scale * ops.sin(angle)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        zeros = ops.zeros_like(cos)
        transforms = ops.stack([
            cos, -sin, centre_x - cos * centre_x + sin * centre_y - shift_x,
            sin, cos, centre_y - sin * centre_x - cos * centre_y - shift_y,
            zeros, zeros,
        ], axis=1)
        return ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant")


def trainer(model, seed: int):
    """The model with the augmentation in front of it: what is trained. The model itself (its
    layers shared, so trained with it) is what is saved and served."""
    return keras.Sequential([keras.Input(shape=model.input_shape[1:]), RandomAffine(ROTATION, ZOOM, SHIFT, seed),
                             model], name=f"{model.name}_training")
