"""The TensorFlow Serving REST API: TF Serving clients work unchanged against this server."""

import base64

import httpx
import numpy as np
import pytest

from tests.helpers import classify, predict
from tools.make_samples import sample_indices


@pytest.fixture(scope="module")
def digits(mnist):
    """Three MNIST test images as model input (0-1 floats), with their labels."""
    indices = [sample_indices(mnist.x_test, mnist.y_test)[digit] for digit in (2, 5, 9)]
    return (mnist.x_test[indices] / 255.0).astype(np.float32), [2, 5, 9]


def test_a_request_body_in_tf_servings_documented_form(server, samples):
    """The row format of TF Serving's REST API docs: signature_name plus b64-encoded instances."""
    body = {
        "signature_name": "serving_default",
        "instances": [{"b64": base64.b64encode(samples[d].read_bytes()).decode()} for d in (3, 7)],
    }
    response = predict(server, body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [int(np.argmax(p)) for p in predictions] == [3, 7]
    assert all(len(p) == 10 and sum(p) == pytest.approx(1.0, abs=1e-4) for p in predictions)
    uploaded = classify(server, samples[3].read_bytes())
    np.testing.assert_allclose(predictions[0], uploaded.json()["probabilities"], atol=1e-6)


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (784,)])
def test_numeric_instances_in_every_accepted_shape(server, digits, shape):
    images, labels = digits
    body = {"instances": [image.reshape(shape).tolist() for image in images]}
    response = predict(server, body)
    assert response.status_code == 200, response.text
    assert np.argmax(response.json()["predictions"], axis=1).tolist() == labels


def test_the_columnar_form_answers_outputs(server, digits):
    images, labels = digits
    for inputs in (images.tolist(), {"pixels": images.tolist()}):
        response = predict(server, {"inputs": inputs})
        assert response.status_code == 200, response.text
        assert np.argmax(response.json()["outputs"], axis=1).tolist() == labels


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_model_status_in_tf_servings_shape(server, name):
    status = httpx.get(f"{server.url}/v1/models/{name}", timeout=10).json()
    (version,) = status["model_version_status"]
    assert version["state"] == "AVAILABLE" and version["status"]["error_code"] == "OK"
    assert version["version"].isdigit()


def raw_image(value: float) -> list:
    return [[value] * 28 for _ in range(28)]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [1.0, 2.0, 5.0]}, "instance 0: expected 28x28, 28x28x1 or 784 numbers"),
        ({"instances": [[float("nan")] * 784]}, "NaN"),
        ({"instances": [raw_image(255.0)]}, "values are 0-1 (pixel / 255), got 255 to 255"),
        ({"instances": [raw_image(0.5)], "inputs": [raw_image(0.5)]}, "exactly one of"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [raw_image(0.1)] * 129}, "129 instances; at most 128"),
        ({"instances": [{"b64": "not base64!"}]}, "not valid base64"),
        ({"instances": [{"b64": base64.b64encode(b"plain text").decode()}]}, "not an image format"),
        ({"inputs": {"image": [raw_image(0.1)]}}, 'names the model input "pixels"'),
        ({"signature_name": "predict_images", "instances": [raw_image(0.1)]}, "unknown signature_name"),
        ([raw_image(0.1)], "must be a JSON object"),
    ],
)
def test_bad_predict_requests_get_tf_servings_error_shape(server, body, message):
    response = predict(server, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"} and message in response.json()["error"], response.text


def test_an_unknown_model_is_404_in_tf_servings_shape(server):
    response = predict(server, {"instances": [raw_image(0.0)]}, name="resnet")
    assert response.status_code == 404 and "Servable not found" in response.json()["error"]
    assert httpx.get(f"{server.url}/v1/models/resnet", timeout=10).status_code == 404
