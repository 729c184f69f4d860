"""The Open Inference Protocol's bodies: what a request's JSON and binary tensor data are parsed into,
what is refused and why, and the answer's layout, read back by tritonclient's own parser."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from tritonclient.http import InferResult
from tritonclient.utils import serialize_byte_tensor

from mnist_service import open_inference as oip
from mnist_service.admission import Shed
from mnist_service.errors import NoDigitFound

MAX = 128
rng = np.random.default_rng(7)
IMAGES = rng.random((3, 28, 28, 1), dtype=np.float32)  # model input: 0-1


def body(header: dict, binary: bytes = b"") -> tuple[bytes, str | None]:
    """A request body and its Inference-Header-Content-Length (None without binary data)."""
    text = json.dumps(header).encode()
    return text + binary, (str(len(text)) if binary else None)


def parse(header: dict, binary: bytes = b"", max_instances: int = MAX) -> oip.InferRequest:
    return oip.parse_infer_request(*body(header, binary), max_instances)


def tensor(name: str, shape: list, datatype: str, **fields) -> dict:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, **fields}]}


def refused(header: dict, binary: bytes = b"", header_length: str | None = "auto") -> str:
    raw, length = body(header, binary)
    with pytest.raises(oip.BadInferRequest) as caught:
        oip.parse_infer_request(raw, length if header_length == "auto" else header_length, MAX)
    assert caught.value.status == 400
    return str(caught.value)


@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 28), (784,)])
@pytest.mark.parametrize("nested", [True, False])
def test_fp32_json_data_in_each_accepted_shape_is_each_images_model_input(shape, nested):
    data = IMAGES.reshape((3, *shape))
    request = parse(tensor("pixels", [3, *shape], "FP32", data=data.tolist() if nested else data.ravel().tolist()))
    assert len(request.items) == 3
    for item, image in zip(request.items, IMAGES):
        assert item.shape == (28, 28, 1) and item.dtype == np.float32
        np.testing.assert_array_equal(item, image)
    assert request.outputs == [("probabilities", False)] and request.id is None


@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 28), (784,)])
def test_fp32_binary_data_is_little_endian_row_major(shape):
    raw = IMAGES.astype("<f4").tobytes()
    request = parse(tensor("pixels", [3, *shape], "FP32", parameters={"binary_data_size": len(raw)}), raw)
    np.testing.assert_array_equal(np.stack(request.items), IMAGES)


def test_bytes_binary_elements_are_a_4_byte_little_endian_length_then_the_bytes():
    files = [b"\x89PNG first", b"", b"x" * 300]
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    assert raw[:4] == b"\x0a\x00\x00\x00" and raw[14:18] == b"\x00\x00\x00\x00" and raw[18:20] == b"\x2c\x01"
    request = parse(tensor("image", [3], "BYTES", parameters={"binary_data_size": len(raw)}), raw)
    assert request.items == files and all(type(item) is bytes for item in request.items)


def test_bytes_binary_data_as_tritonclient_serialises_it():
    files = np.array([b"\x89PNG\r\n\x1a\n" + bytes(range(256)), b"GIF89a"], dtype=object)
    raw = serialize_byte_tensor(files).item()
    for shape in ([2], [2, 1]):
        request = parse(tensor("image", shape, "BYTES", parameters={"binary_data_size": len(raw)}), raw)
        assert request.items == list(files)


def test_bytes_in_json_are_the_base64_text_of_each_file():
    files = [b"\x89PNG\x00\xff", b"\xff\xd8\xff JPEG"]
    texts = [base64.b64encode(f).decode() for f in files]
    assert parse(tensor("image", [2], "BYTES", data=texts)).items == files
    assert parse(tensor("image", [2, 1], "BYTES", data=[[t] for t in texts])).items == files


@pytest.mark.parametrize("data, message", [
    (["not base64!"], "element 0 is not valid base64"),
    (["iVBORw0KGgo"], "element 0 is not valid base64"),  # cut short: no padding
    ([7], "element 0 must be a string"),
    ("aGk=", "data must be a list of base64 strings"),
])
def test_bytes_json_data_that_is_not_base64_text_is_refused(data, message):
    assert message in refused(tensor("image", [1], "BYTES", data=data))


@pytest.mark.parametrize("raw, message", [
    (struct.pack("<I", 3) + b"abc" + b"\x01\x00", "element 1's 4-byte length is cut off at byte 7"),
    (struct.pack("<I", 10) + b"abc", "element 0 says 10 bytes, but 3 remain"),
    (struct.pack("<I", 1) + b"a", "its shape holds 2 elements, the binary data 1"),
    ((struct.pack("<I", 1) + b"a") * 3, "more than the 2 elements of its shape"),
])
def test_bytes_binary_data_that_does_not_hold_its_elements_is_refused(raw, message):
    assert message in refused(tensor("image", [2], "BYTES", parameters={"binary_data_size": len(raw)}), raw)


def fp32(shape=(1, 784), **fields) -> dict:
    return tensor("pixels", list(shape), "FP32", **fields)


@pytest.mark.parametrize("header, message", [
    ({"outputs": []}, '"inputs" must list exactly one input'),
    ({"inputs": [fp32()["inputs"][0]] * 2}, '"inputs" must list exactly one input'),
    (tensor("input_1", [1, 784], "FP32", data=[0.0] * 784), 'unknown input "input_1"'),
    (tensor("pixels", [1, 784], "FP64", data=[0.0] * 784), 'input "pixels" is FP32, got datatype "FP64"'),
    (tensor("image", [1], "FP32", data=[0.0]), 'input "image" is BYTES, got datatype "FP32"'),
    (fp32((1, 28, 27), data=[0.0] * 756), "shape [1, 28, 27] is not [N,28,28,1] or [N,28,28] or [N,784]"),
    (tensor("image", [1, 2], "BYTES", data=["aGk="] * 2), "shape [1, 2] is not [N] or [N,1]"),
    (fp32(("1", 784), data=[0.0] * 784), "shape must be a list of sizes"),
    (fp32((-1, 784), data=[0.0] * 784), "shape must be a list of sizes"),
    (fp32((0, 784), data=[]), "0 images; 1 to 128 per request (MAX_INSTANCES)"),
    (fp32((129, 784), data=[0.0]), "129 images; 1 to 128 per request (MAX_INSTANCES)"),
    (fp32(data=[0.0] * 783), "data shaped [783] does not match its shape [1, 784] (784 values)"),
    (fp32((2, 784), data=[[0.0] * 392] * 4), "data shaped [4, 392] does not match its shape [2, 784]"),
    (fp32(data=[[0.0] * 784, [0.0] * 3]), "data must be numbers"),
    (fp32(data=["0.5"] * 784), "data must be numbers, got str"),
    (fp32(data=[True] * 784), "data must be numbers, got bool"),
    (fp32(data=[2.0] * 784), "values are 0-1 (pixel / 255), got 2 to 2"),
    (fp32(data=[1e39] * 784), "NaN or infinite"),
    (fp32(), 'has no "data" (nor binary_data_size)'),
    (fp32(data=[0.0] * 784, parameters={"shared_memory_region": "r"}), '"shared_memory_region" is not supported'),
    ({**fp32(data=[0.0] * 784), "id": 42}, '"id" must be a string'),
    ({**fp32(data=[0.0] * 784), "outputs": [{"name": "logits"}]}, 'unknown output "logits"'),
    ({**fp32(data=[0.0] * 784), "outputs": [{"name": "digits"}, {"name": "digits"}]}, "asked for twice"),
    ({**fp32(data=[0.0] * 784), "outputs": [{"name": "digits", "parameters": {"binary_data": "yes"}}]},
     '"binary_data" must be true or false'),
    ({**fp32(data=[0.0] * 784), "outputs": [{"name": "digits", "parameters": {"classification": 3}}]},
     '"classification" is not supported'),
    ({**fp32(data=[0.0] * 784), "parameters": {"binary_data_output": 1}}, '"binary_data_output" must be true'),
])
def test_requests_this_model_cannot_answer_are_refused_with_the_reason(header, message):
    assert message in refused(header)


def test_binary_data_must_match_its_declared_size_and_the_body():
    raw = np.zeros(784, "<f4").tobytes()
    assert "binary_data_size is 3136 bytes, but 3132 bytes follow" in refused(
        fp32(parameters={"binary_data_size": 3136}), raw[:-4])
    assert "holds 784 FP32 values (3136 bytes), the binary data is 3132 bytes" in refused(
        fp32(parameters={"binary_data_size": 3132}), raw[:-4])
    assert 'both "data" and binary_data_size' in refused(fp32(data=[0.0] * 784, parameters={"binary_data_size": 3136}),
                                                         raw)
    assert "3136 bytes follow the JSON header, but no input has binary_data_size" in refused(fp32(data=[0.0] * 784),
                                                                                             raw)
    assert "binary_data_size must be a whole number" in refused(fp32(parameters={"binary_data_size": "3136"}), raw)
    # Binary data without the header that says where the JSON ends: the body is not JSON.
    assert "needs the Inference-Header-Content-Length header" in refused(
        fp32(parameters={"binary_data_size": 3136}), raw, header_length=None)
    binary_nan = np.full(784, np.nan, "<f4").tobytes()
    assert "NaN" in refused(fp32(parameters={"binary_data_size": 3136}), binary_nan)


@pytest.mark.parametrize("length", ["x", "0", "-5", "99999", ""])
def test_an_inference_header_content_length_that_is_not_the_jsons_size_is_refused(length):
    raw, _ = body(fp32(data=[0.0] * 784))
    with pytest.raises(oip.BadInferRequest, match="Inference-Header-Content-Length is"):
        oip.split_body(raw, length)


def test_a_body_that_is_not_a_json_object_is_refused():
    for raw, message in ((b"", "the body is empty"), (b"[1, 2]", "a JSON object"), (b"{nope", "not JSON"),
                         (b'{"inputs": NaN}', "not JSON"), (b"[" * 5000, "not JSON")):
        with pytest.raises(oip.BadInferRequest, match=message):
            oip.parse_infer_request(raw, None, MAX)


def test_outputs_default_to_probabilities_in_binary_only_when_asked():
    data = fp32(data=[0.0] * 784)
    assert parse(data).outputs == [("probabilities", False)]
    assert parse({**data, "parameters": {"binary_data_output": True}}).outputs == [("probabilities", True)]
    asked = parse({**data, "id": "r1", "parameters": {"binary_data_output": True},
                   "outputs": [{"name": "digits", "parameters": {"binary_data": False}}, {"name": "probabilities"}]})
    assert asked.outputs == [("digits", False), ("probabilities", True)] and asked.id == "r1"


PROBABILITIES = np.array([[0.1] * 9 + [0.1], [0.0] * 7 + [0.9, 0.1, 0.0]], np.float32)
METADATA = {"name": "mnist-cnn", "version": "20261202T054614Z"}


def test_a_json_answer_has_each_output_asked_for_with_its_shape():
    request = oip.InferRequest([], [("digits", False), ("probabilities", False)], "r1")
    answer, headers = oip.infer_response(PROBABILITIES, request, METADATA)
    assert headers == {"Content-Type": "application/json"}
    assert answer["model_name"] == "mnist-cnn" and answer["model_version"] == METADATA["version"]
    assert answer["id"] == "r1"
    digits, probabilities = answer["outputs"]
    assert digits == {"name": "digits", "datatype": "INT64", "shape": [2], "data": [0, 7]}
    assert probabilities["datatype"] == "FP32" and probabilities["shape"] == [2, 10]
    np.testing.assert_array_equal(np.float32(probabilities["data"]), PROBABILITIES.ravel())


def test_a_binary_answer_is_its_json_header_then_each_binary_output_in_order():
    request = oip.InferRequest([], [("probabilities", True), ("digits", False)], None)
    answer, headers = oip.infer_response(PROBABILITIES, request, METADATA)
    assert headers["Content-Type"] == "application/octet-stream"
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(answer[:size])
    assert "id" not in header
    probabilities, digits = header["outputs"]
    assert probabilities["parameters"] == {"binary_data_size": 80} and "data" not in probabilities
    assert digits["data"] == [0, 7] and "parameters" not in digits
    assert answer[size:] == PROBABILITIES.astype("<f4").tobytes()
    # tritonclient reads it back as it reads Triton's answers.
    result = InferResult.from_response_body(answer, header_length=size)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), PROBABILITIES)
    np.testing.assert_array_equal(result.as_numpy("digits"), [0, 7])


def test_two_binary_outputs_follow_the_header_in_the_order_asked():
    request = oip.InferRequest([], [("digits", True), ("probabilities", True)], None)
    answer, headers = oip.infer_response(PROBABILITIES, request, METADATA)
    size = int(headers["Inference-Header-Content-Length"])
    assert answer[size:size + 16] == struct.pack("<qq", 0, 7)
    result = InferResult.from_response_body(answer, header_length=size)
    assert result.as_numpy("digits").dtype == np.int64
    np.testing.assert_array_equal(result.as_numpy("probabilities"), PROBABILITIES)


def test_an_unreadable_image_makes_the_request_a_400_with_its_reason():
    with pytest.raises(oip.BadInferRequest, match='input "image" element 1: blank'):
        oip.probabilities([PROBABILITIES[0], NoDigitFound("blank")])
    with pytest.raises(RuntimeError):
        oip.probabilities([PROBABILITIES[0], RuntimeError("engine failed")])
    assert oip.probabilities(list(PROBABILITIES)).shape == (2, 10)


def test_metadata_lists_the_inputs_and_outputs_with_minus_one_for_the_batch():
    metadata = oip.model_metadata(METADATA, "litert-int8")
    assert metadata["name"] == "mnist-cnn" and metadata["versions"] == [METADATA["version"]]
    assert metadata["platform"] == "litert-int8"
    assert {tensor["name"]: tensor["shape"] for tensor in metadata["inputs"]} == {
        "pixels": [-1, 28, 28, 1], "image": [-1]}
    assert {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["outputs"]} == {
        "probabilities": ("FP32", [-1, 10]), "digits": ("INT64", [-1])}
    assert oip.server_metadata("1.0.0")["extensions"] == ["binary_tensor_data"]


def test_only_the_served_version_is_found():
    oip.check_version(METADATA, None)
    oip.check_version(METADATA, METADATA["version"])
    with pytest.raises(oip.NoSuchVersion, match='no version "1"') as caught:
        oip.check_version(METADATA, "1")
    assert caught.value.status == 404


def test_a_request_shed_at_the_door_on_a_v2_route_gets_the_protocols_error():
    headers, content = Shed(max_in_flight=3, max_queued=4, max_wait_ms=500).answer("/v2/models/mnist-cnn/infer")
    assert (b"retry-after", b"1") in headers and (b"content-type", b"application/json") in headers
    assert list(json.loads(content)) == ["error"]
    assert oip.is_route("/v2") and oip.is_route("/v2/health/live") and not oip.is_route("/v2x")
