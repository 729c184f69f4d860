"""The service's errors, each carrying the HTTP status and title it is answered with.

The normalisation raises (or returns, one per upload) the upload errors; the registry raises
:class:`NoSuchModel` and :class:`ModelNotReady`; the report route :class:`NoReport`; the classifier
raises :class:`RequestTooLarge`; the middleware raises :class:`UploadTooLarge`,
:class:`BodyTimedOut`, :class:`RequestTimedOut` and :class:`Overloaded`. ``server.py`` registers
one error handler that answers any of them with the RFC 7807 problem :func:`problem` makes; the
batch route puts the same problem in place of each image that has no answer; the TF Serving
routes answer TF Serving's ``{"error": ...}`` instead (``tf_serving.error_body``). Nothing here knows about connexion.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error the client is answered with: ``status`` and ``title`` say how, the message why."""

    status = 500
    title = "Internal Server Error"
    headers: dict[str, str] = {}


class UploadError(ServiceError, ValueError):
    """An upload that cannot be turned into pixels; the subclass says why, the message how."""


class UnreadableImage(UploadError):
    """The upload is empty, not an image format Pillow reads, or its image data is corrupt."""

    status, title = 415, "Unreadable image"


class ImageTooLarge(UploadError):
    """The image declares more pixels than the pixel limit (MAX_IMAGE_PIXELS), or more work than
    the server decodes otherwise: PNG metadata that decompresses past the limits, a JPEG of too many
    scans."""

    status, title = 413, "Image too large"


class NoDigitFound(UploadError):
    """The image holds no single digit: it is blank (nothing stands out from its background), its
    ink too faint or too thin to see at 20 px, it holds only paper lines or empty boxes, or several
    marks the size of a digit, or the image itself is too thin to hold a digit; the message says
    which."""

    status, title = 422, "No digit found"


class UploadTooLarge(ServiceError):
    """The request body is over the upload limit (MAX_UPLOAD_BYTES)."""

    status, title = 413, "Upload too large"


class RequestTooLarge(ServiceError):
    """The images of one request declare more pixels together than the budget (MAX_REQUEST_PIXELS)."""

    status, title = 413, "Request too large"


class BodyTimedOut(ServiceError):
    """The request body did not fully arrive within BODY_TIMEOUT_SECONDS; the connection is closed
    (the rest of the body is not waited for)."""

    status, title = 408, "Request body too slow"
    headers = {"Connection": "close"}


class RequestTimedOut(ServiceError):
    """The request was not answered within its processing deadline (REQUEST_TIMEOUT_SECONDS)."""

    status, title = 504, "Deadline exceeded"


class Overloaded(ServiceError):
    """The worker holds as many requests as it can answer in time: this one is shed, at once."""

    status, title = 503, "Overloaded"
    headers = {"Retry-After": "1"}


class NoSuchModel(ServiceError, LookupError):
    """No model of that name is served."""

    status, title = 404, "No such model"

    def __init__(self, name: str):
        super().__init__(f'no model named "{name}"; see /models')
        self.name = name


class NoReport(ServiceError, LookupError):
    """The model is served but has no training report beside it."""

    status, title = 404, "No training report"


class ModelNotReady(ServiceError, RuntimeError):
    """The model is still loading, or failed to load; the message says which."""

    status, title = 503, "Model not ready"
    headers = {"Retry-After": "5"}


class NotReady(ServiceError):
    """The worker's models are not all loaded and warm (readiness)."""

    status, title = 503, "Not ready"
    headers = {"Retry-After": "5"}


def problem(error: ServiceError) -> dict:
    """The RFC 7807 problem body of an error."""
    return {"type": "about:blank", "title": error.title, "status": error.status, "detail": str(error)}
