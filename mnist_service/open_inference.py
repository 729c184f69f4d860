"""The Open Inference Protocol v2 over REST (KServe v2, Triton's and MLServer's HTTP protocol): its
request and response bodies, the binary tensor data extension and the metadata, as pure functions.

An infer request names exactly one input: ``pixels`` (FP32, shape ``[N, 28, 28, 1]``,
``[N, 28, 28]`` or ``[N, 784]``, the model input itself: values 0-1, white digit on black, checked
by model_input.check_model_input) or ``image`` (BYTES, shape ``[N]`` or ``[N, 1]``, each element an
image file, normalised like an upload). :func:`parse_infer_request` turns a body into one item per
image, which the model's micro-batcher classifies like the uploads of the other routes, and the
outputs asked for: ``probabilities`` (FP32 ``[N, 10]``, what is returned when none is named) and
``digits`` (INT64 ``[N]``). :func:`infer_response` writes the answer.

Tensor data travels in the JSON body (``data``, row-major, flat or nested; a BYTES element in JSON
is the base64 text of its bytes) or, by the binary tensor data extension, as raw bytes after a JSON
header of ``Inference-Header-Content-Length`` bytes: little-endian, row-major, each binary tensor
sized by its ``parameters.binary_data_size``, a BYTES element as a 4-byte little-endian length and
its bytes. Outputs asked for with ``parameters.binary_data: true`` (or the request's
``binary_data_output``) are answered the same way. Errors are the protocol's ``{"error": "..."}``
(:func:`error_body`).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass

import numpy as np
import orjson

from mnist_service import classifier, model_input
from mnist_service.errors import ServiceError

HEADER_LENGTH = "Inference-Header-Content-Length"  # the JSON header's size, when binary data follows it
BINARY_CONTENT_TYPE = "application/octet-stream"
SERVER_NAME = "mnist-service"
EXTENSIONS = ["binary_tensor_data"]

PIXELS, IMAGE = "pixels", "image"  # the inputs (pixels is the Keras model's input layer)
PROBABILITIES, DIGITS = "probabilities", "digits"  # the outputs
INPUTS = [
    {"name": PIXELS, "datatype": "FP32", "shape": [-1, *model_input.SHAPE]},
    {"name": IMAGE, "datatype": "BYTES", "shape": [-1]},
]
OUTPUTS = [
    {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, 10]},
    {"name": DIGITS, "datatype": "INT64", "shape": [-1]},
]
DEFAULT_OUTPUTS = (PROBABILITIES,)
DATATYPES = {tensor["name"]: tensor["datatype"] for tensor in INPUTS + OUTPUTS}
# What one image of each input is, after the batch dimension.
IMAGE_SHAPES = {PIXELS: ((28, 28, 1), (28, 28), (784,)), IMAGE: ((), (1,))}
# Parameters of features this server does not have; a request that relies on one is refused, not
# answered as if it had not asked.
UNSUPPORTED_INPUT_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
UNSUPPORTED_OUTPUT_PARAMETERS = ("classification", *UNSUPPORTED_INPUT_PARAMETERS)


class BadInferRequest(ServiceError, ValueError):
    """The body is not an infer request this model can answer; the message says why."""

    status, title = 400, "Bad infer request"


class NoSuchVersion(ServiceError, LookupError):
    """The model is served, but not in that version."""

    status, title = 404, "No such model version"


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: one item per image (an image file, or the model input (28, 28, 1)
    of one image), the outputs asked for in order, each with whether it goes in binary, and the
    request's id (echoed in the answer)."""

    items: list[bytes | np.ndarray]
    outputs: list[tuple[str, bool]]
    id: str | None = None


def is_route(path: str) -> bool:
    """Whether ``path`` is one of the protocol's (they answer errors as ``{"error": ...}``)."""
    return path == "/v2" or path.startswith("/v2/")


def server_metadata(version: str) -> dict:
    """The server metadata answer."""
    return {"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS}


def model_metadata(metadata: dict, platform: str) -> dict:
    """The model metadata answer of a model (its artifacts metadata), run by ``platform``."""
    return {"name": metadata["name"], "versions": [metadata["version"]], "platform": platform,
            "inputs": INPUTS, "outputs": OUTPUTS}


def check_version(metadata: dict, version: str | None) -> None:
    """NoSuchVersion unless ``version`` is None (any) or the model's served version."""
    if version is not None and version != metadata["version"]:
        raise NoSuchVersion(f'model "{metadata["name"]}" has no version "{version}"; it serves version '
                            f'"{metadata["version"]}"')


def split_body(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """A request body -> (its JSON header, the binary tensor data after it). Without
    ``header_length`` (the Inference-Header-Content-Length header) the whole body is the JSON."""
    if not body:
        raise BadInferRequest("the body is empty; it is an infer request, JSON")
    if header_length is None:
        size = len(body)
    elif not header_length.strip().isdigit() or not 0 < int(header_length) <= len(body):
        raise BadInferRequest(f"{HEADER_LENGTH} is {header_length!r}: it must be the size of the body's JSON "
                              f"header, 1 to {len(body)} bytes")
    else:
        size = int(header_length)
    view = memoryview(body)
    try:
        header = orjson.loads(view[:size])
    except orjson.JSONDecodeError as error:
        hint = "" if header_length else f" (binary tensor data after the JSON needs the {HEADER_LENGTH} header)"
        raise BadInferRequest(f"the infer request is not JSON: {error}{hint}") from None
    if not isinstance(header, dict):
        raise BadInferRequest('the infer request must be a JSON object with "inputs"')
    return header, view[size:]


def parse_infer_request(body: bytes, header_length: str | None, max_instances: int) -> InferRequest:
    """An infer request body (with its Inference-Header-Content-Length, if any) -> InferRequest."""
    header, binary = split_body(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInferRequest('"id" must be a string')
    parameters = _parameters(header, "the request")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise BadInferRequest(f'"inputs" must list exactly one input: "{PIXELS}" (FP32 pixels) or "{IMAGE}" '
                              "(BYTES image files)")
    (tensor,) = inputs
    items = _input_items(tensor, binary, max_instances)
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise BadInferRequest('the parameter "binary_data_output" must be true or false')
    return InferRequest(items, _requested_outputs(header.get("outputs"), binary_output), request_id)


def _parameters(tensor: dict, where: str, unsupported: tuple[str, ...] = ()) -> dict:
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadInferRequest(f'the "parameters" of {where} must be an object')
    for name in unsupported:
        if name in parameters:
            raise BadInferRequest(f'{where}: the parameter "{name}" is not supported by this server')
    return parameters


def _input_items(tensor, binary: memoryview, max_instances: int) -> list[bytes | np.ndarray]:
    """One input tensor (its binary data, if any, is ``binary``) -> one item per image."""
    if not isinstance(tensor, dict):
        raise BadInferRequest("an input is an object with name, shape, datatype and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name not in IMAGE_SHAPES:
        raise BadInferRequest(f'unknown input {_quoted(name)}; this model takes "{PIXELS}" (FP32, '
                              f'[N,28,28,1], [N,28,28] or [N,784]) or "{IMAGE}" (BYTES, [N]: image files)')
    where = f'input "{name}"'
    if datatype != DATATYPES[name]:
        raise BadInferRequest(f"{where} is {DATATYPES[name]}, got datatype {_quoted(datatype)}")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)):
        raise BadInferRequest(f"{where}: shape must be a list of sizes (whole numbers, at least 0), got {shape!r}")
    if tuple(shape[1:]) not in IMAGE_SHAPES[name]:
        accepted = " or ".join(str([-1, *image]).replace("-1", "N").replace(" ", "") for image in IMAGE_SHAPES[name])
        raise BadInferRequest(f"{where}: shape {shape} is not {accepted}")
    count = shape[0]
    if not 1 <= count <= max_instances:
        raise BadInferRequest(f"{where}: {count} images; 1 to {max_instances} per request (MAX_INSTANCES)")
    parameters = _parameters(tensor, where, UNSUPPORTED_INPUT_PARAMETERS)
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadInferRequest(f"{where}: binary_data_size must be a whole number of bytes, got {size!r}")
        if "data" in tensor:
            raise BadInferRequest(f'{where} has both "data" and binary_data_size; give one')
        if size != len(binary):
            raise BadInferRequest(f"{where}: binary_data_size is {size} bytes, but {len(binary)} bytes follow the "
                                  f"JSON header ({HEADER_LENGTH})")
        if name == PIXELS:
            return _pixels(_binary_fp32(binary, math.prod(shape), where), shape, where)
        return _binary_bytes(binary, count, where)
    if len(binary):
        raise BadInferRequest(f"{len(binary)} bytes follow the JSON header, but no input has binary_data_size")
    if "data" not in tensor:
        raise BadInferRequest(f'{where} has no "data" (nor binary_data_size)')
    if name == PIXELS:
        return _pixels(_json_fp32(tensor["data"], shape, where), shape, where)
    return _json_bytes(tensor["data"], shape, where)


def _quoted(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _binary_fp32(binary: memoryview, values: int, where: str) -> np.ndarray:
    if len(binary) != values * 4:
        raise BadInferRequest(f"{where}: its shape holds {values} FP32 values ({values * 4} bytes), the binary data "
                              f"is {len(binary)} bytes")
    return np.frombuffer(binary, dtype="<f4")


def _json_fp32(data, shape: list[int], where: str) -> np.ndarray:
    """JSON tensor data, flat or nested as ``shape``, -> a flat float32 array."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):  # ragged nesting
        raise BadInferRequest(f"{where}: data must be numbers, flat or nested as its shape {shape}") from None
    if array.dtype.kind not in "iuf":  # strings, booleans, null, objects
        raise BadInferRequest(f"{where}: data must be numbers, got {array.dtype.name} values")
    if array.size != math.prod(shape) or (array.ndim > 1 and list(array.shape) != shape):
        raise BadInferRequest(f"{where}: data shaped {list(array.shape)} does not match its shape {shape} "
                              f"({math.prod(shape)} values)")
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused as not finite
        return array.astype(np.float32).ravel()


def _pixels(values: np.ndarray, shape: list[int], where: str) -> list[np.ndarray]:
    """Flat float32 values of ``shape`` -> each image's model input (28, 28, 1), checked."""
    try:
        batch = model_input.check_model_input(values.reshape((shape[0], *model_input.SHAPE)))
    except ValueError as error:
        raise BadInferRequest(f"{where}: {error}") from None
    return list(batch)


def _binary_bytes(binary: memoryview, count: int, where: str) -> list[bytes]:
    """BYTES binary data (each element a 4-byte little-endian length, then its bytes) -> the elements."""
    elements, offset = [], 0
    while offset < len(binary):
        if len(elements) == count:
            raise BadInferRequest(f"{where}: the binary data holds more than the {count} elements of its shape")
        if offset + 4 > len(binary):
            raise BadInferRequest(f"{where}: element {len(elements)}'s 4-byte length is cut off at byte {offset}")
        (length,) = struct.unpack_from("<I", binary, offset)
        offset += 4
        if offset + length > len(binary):
            raise BadInferRequest(f"{where}: element {len(elements)} says {length} bytes, but "
                                  f"{len(binary) - offset} remain")
        elements.append(bytes(binary[offset:offset + length]))
        offset += length
    if len(elements) != count:
        raise BadInferRequest(f"{where}: its shape holds {count} elements, the binary data {len(elements)}")
    return elements


def _json_bytes(data, shape: list[int], where: str) -> list[bytes]:
    """BYTES JSON data: each element the base64 text of an image file (flat, or nested as [N, 1])."""
    if not isinstance(data, list):
        raise BadInferRequest(f"{where}: data must be a list of base64 strings, one image file each")
    if len(shape) == 2 and all(isinstance(element, list) and len(element) == 1 for element in data):
        data = [element[0] for element in data]
    if len(data) != shape[0]:
        raise BadInferRequest(f"{where}: its shape holds {shape[0]} elements, data has {len(data)}")
    files = []
    for index, element in enumerate(data):
        if not isinstance(element, str):
            raise BadInferRequest(f"{where}: element {index} must be a string, the base64 text of an image file")
        try:
            files.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise BadInferRequest(f"{where}: element {index} is not valid base64 (in JSON a BYTES element is the "
                                  "base64 text of an image file)") from None
    return files


def _requested_outputs(outputs, binary_default: bool) -> list[tuple[str, bool]]:
    """The "outputs" of a request -> [(name, in binary)], probabilities alone when none is named."""
    if outputs is None:
        return [(name, binary_default) for name in DEFAULT_OUTPUTS]
    if not isinstance(outputs, list) or not outputs:
        raise BadInferRequest('"outputs" must be a non-empty list of {"name": ...} objects (or left out)')
    requested = []
    for output in outputs:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in (PROBABILITIES, DIGITS):
            raise BadInferRequest(f'unknown output {_quoted(name)}; this model has "{PROBABILITIES}" (FP32 [N,10]) '
                                  f'and "{DIGITS}" (INT64 [N])')
        if name in (done for done, _ in requested):
            raise BadInferRequest(f'output "{name}" is asked for twice')
        parameters = _parameters(output, f'output "{name}"', UNSUPPORTED_OUTPUT_PARAMETERS)
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise BadInferRequest(f'output "{name}": the parameter "binary_data" must be true or false')
        requested.append((name, binary))
    return requested


def probabilities(results: list[np.ndarray | Exception]) -> np.ndarray:
    """The classified images' probabilities, (N, 10); an image that cannot be read makes the
    request a BadInferRequest, and any other error is raised as it is."""
    return classifier.stacked(results,
                              lambda index, error: BadInferRequest(f'input "{IMAGE}" element {index}: {error}'))


def infer_response(probabilities: np.ndarray, request: InferRequest, metadata: dict) -> tuple[dict | bytes, dict]:
    """The answer to ``request`` from the model of ``metadata``: its body and headers. The body is
    the response object, for JSON, or when an output goes in binary, the bytes of its JSON header
    and the binary data after it (with the Inference-Header-Content-Length header)."""
    tensors = {PROBABILITIES: probabilities.astype("<f4"), DIGITS: probabilities.argmax(axis=1).astype("<i8")}
    outputs, binary = [], []
    for name, in_binary in request.outputs:
        tensor = tensors[name]
        output = {"name": name, "datatype": DATATYPES[name], "shape": list(tensor.shape)}
        if in_binary:
            binary.append(tensor.tobytes())
            output["parameters"] = {"binary_data_size": len(binary[-1])}
        else:
            output["data"] = tensor.ravel().tolist()
        outputs.append(output)
    response = {"model_name": metadata["name"], "model_version": metadata["version"], "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    if not binary:
        return response, {"Content-Type": "application/json"}
    header = orjson.dumps(response)
    return b"".join([header, *binary]), {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}


def error_body(error: ServiceError) -> tuple[dict, int]:
    """The protocol's error answer and its status."""
    return {"error": str(error)}, error.status
