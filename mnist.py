"""HTTP handlers for the routes in models.yaml, each named by its operationId.

A handler turns HTTP input into a domain call and the result into JSON; routing, request
validation and error rendering (RFC 7807 problem JSON) are connexion's.
"""

from connexion import request
from connexion.exceptions import ProblemException

import preprocess

# The spec declares problem JSON for errors too, so a handler names the content type of its answer.
JSON = {"Content-Type": "application/json"}


def classify(file):
    """POST /mnist/classify: one uploaded image -> its digit and class probabilities."""
    try:
        pixels = preprocess.upload_to_pixels(file.file.read())
    except preprocess.ImageTooLarge as error:
        raise ProblemException(status=413, title="Image too large", detail=str(error)) from None
    except preprocess.UnreadableImage as error:
        raise ProblemException(status=415, title="Unreadable image", detail=str(error)) from None
    return request.state.classifier.classify(pixels), 200, JSON
