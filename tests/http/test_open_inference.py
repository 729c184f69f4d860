"""The Open Inference Protocol v2 over REST: Triton's own client, tritonclient.http, works against the
real gunicorn server, with its defaults (binary tensor data both ways) and with JSON only."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT, gunicorn
from tests.helpers import access_log, classify, copy_model_broken, get, metric, predict, wait_for_failed_load
from tools.make_samples import sample_indices


@pytest.fixture(scope="module")
def client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)


@pytest.fixture(scope="module")
def digits(mnist):
    """Four MNIST test images as model input (0-1 floats, (4, 28, 28, 1)), with their labels."""
    labels = [0, 4, 7, 9]
    indices = [sample_indices(mnist.x_test, mnist.y_test)[digit] for digit in labels]
    return (mnist.x_test[indices] / 255.0).astype(np.float32)[..., None], labels


def pixels_input(images: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(images.shape), "FP32")
    return tensor.set_data_from_numpy(images, binary_data=binary)


def image_input(files: list[bytes], binary: bool, shape: tuple[int, ...] | None = None) -> triton.InferInput:
    """A BYTES input of image files: raw bytes in binary, their base64 text in JSON (tritonclient
    sends a JSON BYTES element as UTF-8 text, which an image file is not)."""
    elements = np.array(files if binary else [base64.b64encode(f) for f in files], dtype=object)
    elements = elements.reshape(shape or (len(files),))
    tensor = triton.InferInput("image", list(elements.shape), "BYTES")
    return tensor.set_data_from_numpy(elements, binary_data=binary)


def outputs(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def infer_raw(server, body: dict, path: str = "/v2/models/mnist-cnn/infer") -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=json.dumps(body), timeout=30)


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    spec = yaml.safe_load((ROOT / "models.yaml").read_text())
    assert metadata["version"] == spec["info"]["version"] and metadata["name"]
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_model_metadata_and_readiness_with_and_without_the_version(server, client, name):
    version = get(server, f"/models/{name}").json()["version"]
    for metadata in (client.get_model_metadata(name), client.get_model_metadata(name, version)):
        assert metadata["name"] == name and metadata["versions"] == [version]
        assert metadata["platform"] == "litert-int8"
        assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in metadata["inputs"]} == {
            ("pixels", "FP32", (-1, 28, 28, 1)), ("image", "BYTES", (-1,))}
        assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in metadata["outputs"]} == {
            ("probabilities", "FP32", (-1, 10)), ("digits", "INT64", (-1,))}
    assert client.is_model_ready(name) and client.is_model_ready(name, version)


@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 28), (784,)])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_pixels_in_each_shape_are_classified_as_tf_serving_classifies_them(server, client, digits, shape,
                                                                                 binary):
    images, labels = digits
    batch = images.reshape((len(labels), *shape))
    result = client.infer("mnist-cnn", [pixels_input(batch, binary)],
                          outputs=outputs("probabilities", "digits", binary=binary))
    assert result.as_numpy("digits").tolist() == labels
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(labels), 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    tf_serving = predict(server, {"instances": images.tolist()}).json()["predictions"]
    np.testing.assert_allclose(probabilities, tf_serving, atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_image_files_answer_what_the_upload_route_answers(server, client, samples, binary, name):
    """All ten sample PNGs in one request (N=10): each its true digit, with the probabilities
    /mnist/classify gives the same file."""
    files = [samples[digit].read_bytes() for digit in range(10)]
    result = client.infer(name, [image_input(files, binary)], outputs=outputs("digits", "probabilities", binary=binary))
    assert result.as_numpy("digits").tolist() == list(range(10))
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == client.get_model_metadata(name)["versions"][0]
    for digit, probabilities in enumerate(result.as_numpy("probabilities")):
        uploaded = classify(server, files[digit], model=name).json()
        np.testing.assert_allclose(probabilities, uploaded["probabilities"], atol=1e-6)


def test_by_default_the_answer_is_the_probabilities_in_binary(client, samples):
    result = client.infer("mnist-cnn", [image_input([samples[3].read_bytes()], binary=True, shape=(1, 1))])
    (output,) = result.get_response()["outputs"]
    assert output["name"] == "probabilities" and output["parameters"]["binary_data_size"] == 40
    assert int(np.argmax(result.as_numpy("probabilities"))) == 3 and result.as_numpy("digits") is None


def test_the_versioned_route_answers_and_echoes_the_request_id(client, samples):
    version = client.get_model_metadata("mnist-dense")["versions"][0]
    result = client.infer("mnist-dense", [image_input([samples[8].read_bytes()], binary=False)], model_version=version,
                          request_id="req-8", outputs=outputs("digits", binary=False))
    assert result.get_response()["id"] == "req-8" and result.as_numpy("digits").tolist() == [8]


def test_a_json_request_as_curl_sends_it(server, samples):
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(samples[6].read_bytes()).decode()]}],
            "outputs": [{"name": "digits"}]}
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", json=body, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json", response.text
    (output,) = response.json()["outputs"]
    assert output == {"name": "digits", "datatype": "INT64", "shape": [1], "data": [6]}


def test_the_specs_infer_example_is_answered(server, samples):
    spec = yaml.safe_load((ROOT / "models.yaml").read_text())
    example = spec["components"]["requestBodies"]["OipInferRequest"]["content"]["application/json"]["examples"]
    body = example["image"]["value"]
    assert base64.b64decode(body["inputs"][0]["data"][0]) == samples[4].read_bytes()
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert {o["name"]: o["data"] for o in response.json()["outputs"]}["digits"] == [4]


def assert_error(response: httpx.Response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"} and says in response.json()["error"], response.text


def test_an_unknown_model_or_version_is_404_with_the_protocols_error(server, client):
    for path in ("/v2/models/resnet", "/v2/models/resnet/ready", "/v2/models/mnist-cnn/versions/1",
                 "/v2/models/mnist-cnn/versions/1/ready"):
        assert_error(get(server, path), 404, "resnet" if "resnet" in path else 'no version "1"')
    assert_error(infer_raw(server, {}, "/v2/models/resnet/infer"), 404, 'no model named "resnet"')
    assert_error(infer_raw(server, {}, "/v2/models/mnist-cnn/versions/1/infer"), 404, 'no version "1"')
    with pytest.raises(InferenceServerException) as caught:
        client.infer("resnet", [pixels_input(np.zeros((1, 784), np.float32), binary=True)])
    assert caught.value.status() == "404" and "resnet" in caught.value.message()
    assert not client.is_model_ready("resnet") and not client.is_model_ready("mnist-cnn", "1")


def test_bad_requests_are_400_with_the_reason_and_the_server_keeps_serving(server, client, samples):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mnist-cnn", [pixels_input(np.zeros((1, 28, 27), np.float32), binary=True)])
    assert caught.value.status() == "400" and "is not [N,28,28,1] or [N,28,28] or [N,784]" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mnist-cnn", [image_input([b"not an image"], binary=True)])
    assert caught.value.status() == "400" and 'input "image" element 0' in caught.value.message()
    tensor = {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}
    response = infer_raw(server, {"inputs": [tensor], "outputs": [{"name": "logits"}]})
    assert_error(response, 400, 'unknown output "logits"')
    assert_error(infer_raw(server, {"inputs": [{**tensor, "shape": [2, 784]}]}), 400, "does not match its shape")
    assert_error(infer_raw(server, {"inputs": [{**tensor, "datatype": "INT8"}]}), 400, "is FP32")
    bad_base64 = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}
    assert_error(infer_raw(server, {"inputs": [bad_base64]}), 400, "not valid base64")
    # connexion's own refusals on these routes are the protocol's error too.
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", json={"inputs": "x"}, timeout=30)
    assert_error(response, 400, "is not of type 'array'")
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", content=b"x", timeout=30,
                          headers={"Content-Type": "text/plain"})
    assert_error(response, 415, "Invalid Content-type (text/plain)")
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", content=b'{"inputs": []}\0\0\0\0', timeout=30,
                          headers={"Content-Type": "application/json", "Inference-Header-Content-Length": "14"})
    assert_error(response, 415, "is sent as application/octet-stream")
    assert_error(httpx.delete(f"{server.url}/v2/health/live", timeout=30), 405, "Method Not Allowed")
    result = client.infer("mnist-cnn", [image_input([samples[1].read_bytes()], binary=True)],
                          outputs=outputs("digits", binary=True))
    assert result.as_numpy("digits").tolist() == [1]


def test_json_nested_too_deeply_to_parse_is_a_400_not_a_500(server):
    """The JSON validation all JSON routes share (validators.TextJSONRequestBodyValidator): the json
    module gives up on deep nesting with a RecursionError, which connexion answered 500."""
    deep = b"[" * 100_000
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", content=deep, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert_error(response, 400, "nested too deeply")
    assert_error(httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", content=deep, timeout=30), 400, "not JSON")
    response = httpx.post(f"{server.url}/v1/models/mnist-cnn:predict", content=deep, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_an_infer_body_over_the_upload_limit_is_413_with_the_protocols_error(server):
    response = httpx.post(f"{server.url}/v2/models/mnist-cnn/infer", content=b"{" + b" " * (4 * 1024 * 1024),
                          timeout=30)
    assert_error(response, 413, "limit is 4194304")


def test_metrics_label_the_routes_by_their_template_and_the_log_has_the_digits(server, client, samples):
    client.infer("mnist-dense", [image_input([samples[5].read_bytes()], binary=True)], request_id="x",
                 headers={"X-Request-ID": "oip-metrics-5"})
    client.is_model_ready("mnist-dense")
    text = get(server, "/metrics").text
    assert metric(text, "mnist_http_requests_total", route="mnist.open_inference_infer", status="200") >= 1
    assert metric(text, "mnist_http_requests_total", route="mnist.open_inference_model_ready", status="200") >= 1
    assert "mnist-dense" not in "".join(line for line in text.splitlines() if line.startswith("mnist_http_"))
    entries = access_log(server, until=lambda entries: any(entry["request_id"] == "oip-metrics-5"
                                                           for entry in entries))
    entry = next(entry for entry in entries if entry["request_id"] == "oip-metrics-5")
    assert entry["route"] == "mnist.open_inference_infer" and entry["digits"] == [5]


def test_a_model_that_failed_to_load_is_503_with_retry_after(small_model, tmp_path, samples):
    """As on /health/ready: server and model readiness 503 with the reason, the metadata still
    answered (it is read before the model loads), inference 503."""
    metadata = copy_model_broken(small_model, tmp_path)
    with gunicorn(tmp_path, tmp_path, workers=1) as failing:
        ready = wait_for_failed_load(failing, "/v2/models/mnist-cnn/ready")
        assert_error(ready, 503, "failed")
        assert ready.headers["retry-after"]
        assert_error(get(failing, "/v2/health/ready"), 503, "failed")
        assert get(failing, "/v2/health/live").status_code == 200
        assert get(failing, "/v2/models/mnist-cnn").json()["versions"] == [metadata["version"]]
        body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                            "data": [base64.b64encode(samples[2].read_bytes()).decode()]}]}
        response = infer_raw(failing, body)
        assert_error(response, 503, "failed")
        client = triton.InferenceServerClient(failing.url.removeprefix("http://"))
        assert client.is_server_live() and not client.is_server_ready() and not client.is_model_ready("mnist-cnn")
