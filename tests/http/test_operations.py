"""Operating the service: health, metrics across workers, model metadata, request ids, access
log and the upload limit, over real HTTP against gunicorn with 2 workers."""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import WITHOUT_TENSORFLOW, gunicorn, wait_until_ready
from tests.helpers import (
    access_log,
    assert_problem,
    classify,
    copy_model,
    copy_model_broken,
    get,
    metric,
    wait_for_failed_load,
)
from tools.readiness import worker_pids


def test_liveness_and_readiness(server):
    assert get(server, "/health/live").json() == {"status": "alive"}
    ready = get(server, "/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["model"] == "mnist-cnn"


def test_the_server_serves_without_tensorflow_or_keras(server, samples):
    """Every server of these tests runs where TensorFlow and Keras cannot be imported (conftest), as
    in the CPU image, and classifies; no worker has TensorFlow's libraries loaded."""
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2
    for pid in workers:
        assert str(WITHOUT_TENSORFLOW) in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "site-packages/tensorflow/" not in maps and "site-packages/keras/" not in maps
    assert classify(server, samples[5].read_bytes()).json()["digit"] == 5


def test_readiness_is_503_until_the_models_are_warm(small_models, tmp_path, samples):
    """Polled from the moment gunicorn starts, readiness says 503 (and why) before it says 200. (The
    tensorflow engine, which imports TensorFlow first, loads slowly enough to be seen loading; the
    LiteRT engines are ready in a few hundredths of a second.)"""
    with gunicorn(small_models, tmp_path, workers=1, tensorflow=True, INFERENCE_ENGINE="tensorflow") as starting:
        answers = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not answers or answers[-1].status_code != 200):
            try:
                answers.append(get(starting, "/health/ready"))
            except httpx.TransportError:
                time.sleep(0.02)
        assert answers and answers[-1].status_code == 200, starting.log_text()
        first = answers[0]
        assert first.status_code == 503, "readiness answered 200 before the model had loaded"
        assert first.headers["content-type"] == "application/problem+json"
        assert "still loading" in first.json()["detail"] and first.headers["retry-after"]
        assert answers[-1].json()["models"] == ["mnist-cnn", "mnist-dense"]
        assert classify(starting, samples[2].read_bytes()).json()["digit"] == 2


def test_a_model_that_fails_to_load_keeps_readiness_503_with_the_reason(small_model, tmp_path, samples):
    """The model's files match its metadata, but its served flatbuffer is not a LiteRT model."""
    copy_model_broken(small_model, tmp_path)
    with gunicorn(tmp_path, tmp_path, workers=1) as failing:
        ready = wait_for_failed_load(failing, "/health/ready")
        assert ready.status_code == 503 and "loading" in ready.json()["detail"], failing.log_text()
        assert get(failing, "/health/live").status_code == 200
        unavailable = classify(failing, samples[1].read_bytes())
        assert unavailable.status_code == 503 and "failed" in unavailable.json()["detail"]
        assert get(failing, "/v1/models/mnist-cnn").json()["model_version_status"][0]["state"] == "END"


def test_metrics_count_requests_from_every_worker(server, samples):
    before = get(server, "/metrics")
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    images = [samples[digit].read_bytes() for digit in (1, 8)] * 10
    with ThreadPoolExecutor(8) as pool:  # concurrent, new connections: both workers answer
        answers = list(pool.map(lambda image: classify(server, image), images))
    assert all(answer.status_code == 200 for answer in answers)
    after = get(server, "/metrics").text

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before.text, name, **labels)

    assert delta("mnist_http_requests_total", route="mnist.classify", method="POST", status="200") == 20
    assert delta("mnist_predictions_total", model="mnist-cnn", digit="1") == 10
    assert delta("mnist_predictions_total", model="mnist-cnn", digit="8") == 10
    assert delta("mnist_inference_batch_size_sum", model="mnist-cnn") == 20, "20 images, in however many calls"
    assert 1 <= delta("mnist_inference_batch_size_count", model="mnist-cnn") <= 20
    assert delta("mnist_http_request_duration_seconds_count", route="mnist.classify") == 20
    assert metric(after, "mnist_model_load_seconds") > 0
    classify(server, b"not an image")
    assert metric(get(server, "/metrics").text, "mnist_http_errors_total", kind="Unsupported Media Type") >= 1


@pytest.mark.parametrize("swapped, says", [
    ("mnist-cnn.keras", "is not the model mnist-cnn.json describes"),
    ("mnist-cnn.int8.tflite", "is not the flatbuffer mnist-cnn.json describes"),
    ("mnist-cnn.float32.tflite", "is not the flatbuffer mnist-cnn.json describes"),
])
def test_a_file_that_is_not_the_one_its_metadata_describes_stops_the_server(small_model, tmp_path, swapped, says):
    """A model or flatbuffer swapped without its metadata (or the reverse) is refused at start, by name."""
    copy_model(small_model, tmp_path)
    (tmp_path / swapped).write_bytes((tmp_path / swapped).read_bytes() + b"tampered")
    with gunicorn(tmp_path, tmp_path, workers=1) as refused:
        assert refused.process.wait(timeout=120) != 0
        assert says in refused.log_text()


def test_model_metadata(server, small_model):
    saved = json.loads(small_model.with_suffix(".json").read_text())
    listed = get(server, "/models").json()["models"]
    assert [(model["name"], model["default"]) for model in listed] == [("mnist-cnn", True), ("mnist-dense", False)]
    model = get(server, "/models/mnist-cnn").json()
    assert model == listed[0]
    assert model["version"] == saved["version"] and model["state"] == "ready"
    assert listed[1]["parameters"] < model["parameters"] and listed[1]["input"] == model["input"]
    assert model["input"] == {"shape": [28, 28, 1], "dtype": "float32", "scale": [0.0, 1.0],
                              "polarity": "white digit on black background",
                              "framing": "longer side 20 px, centre of mass at (14.0, 14.0)"}
    assert model["classes"] == list(range(10))
    assert model["test_accuracy"] == saved["test_accuracy"] and model["data_sha256"] == saved["data_sha256"]
    assert model["versions"]["tensorflow"] and model["trained_at"] == saved["trained_at"]
    assert model["engine"] == "litert-int8" and model["gpu"] is False
    assert model["devices"] == ["LiteRT XNNPACK (CPU), int8 weights"]
    missing = get(server, "/models/resnet-50")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_each_model_serves_the_training_report_written_beside_it(server, small_models):
    for name in ("mnist-cnn", "mnist-dense"):
        page = get(server, f"/models/{name}/report")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.text == (small_models / f"{name}.report.html").read_text(encoding="utf-8")
        saved = json.loads((small_models / f"{name}.json").read_text())
        assert saved["report"] == f"{name}.report.html"
        wrong = round((1 - saved["test_accuracy"]) * saved["test_examples"])
        assert f"{wrong} of {saved['test_examples']} test digits wrong" in page.text
        assert page.text.count('src="data:image/png;base64,') == 3
    assert_problem(get(server, "/models/resnet-50/report"), 404, 'no model named "resnet-50"')


def test_a_model_without_its_report_still_serves_and_its_report_is_404(small_model, tmp_path, samples):
    copy_model(small_model, tmp_path)
    (tmp_path / "mnist-cnn.report.html").unlink()
    with gunicorn(tmp_path, tmp_path, workers=1) as reportless:
        wait_until_ready(reportless)
        assert_problem(get(reportless, "/models/mnist-cnn/report"), 404, "mnist-cnn has no training report")
        assert classify(reportless, samples[4].read_bytes()).json()["digit"] == 4


def test_the_default_model_is_chosen_by_env_and_must_exist(small_models, tmp_path, samples):
    with gunicorn(small_models, tmp_path, workers=1, DEFAULT_MODEL="mnist-dense") as dense_first:
        wait_until_ready(dense_first)
        assert classify(dense_first, samples[3].read_bytes()).json()["model"] == "mnist-dense"
        assert [model["name"] for model in get(dense_first, "/models").json()["models"]] == ["mnist-dense", "mnist-cnn"]
    with gunicorn(small_models, tmp_path, workers=1, DEFAULT_MODEL="mnist-resnet") as refused:
        assert refused.process.wait(timeout=120) != 0
        assert 'the default model "mnist-resnet" (DEFAULT_MODEL) is not in' in refused.log_text()


def test_a_bad_setting_stops_the_server_with_a_message_naming_it(small_models, tmp_path):
    with gunicorn(small_models, tmp_path, workers=1, BATCH_MAX_SIZE="abc") as refused:
        assert refused.process.wait(timeout=60) != 0
        assert 'error: BATCH_MAX_SIZE is "abc"; it is a whole number of at least 1' in refused.log_text()
        assert "Traceback" not in refused.log_text()


def test_request_ids_are_echoed_or_made_and_logged_as_json(server, samples):
    mine = classify(server, samples[6].read_bytes(), headers={"X-Request-ID": "client-id-42"})
    assert mine.headers["x-request-id"] == "client-id-42"
    made = classify(server, samples[6].read_bytes()).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    entries = access_log(server, until=lambda entries: {"client-id-42", made} <= {entry["request_id"]
                                                                                for entry in entries})
    entry = next(entry for entry in entries if entry["request_id"] == "client-id-42")
    assert entry["route"] == "mnist.classify" and entry["status"] == 200 and entry["method"] == "POST"
    assert entry["digits"] == [6] and entry["latency_ms"] > 0
    assert any(entry["request_id"] == made for entry in entries)


def test_an_upload_over_the_size_limit_is_refused_with_413(server, samples):
    too_big = b"\0" * (4 * 1024 * 1024 + 1)
    response = classify(server, too_big)
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"
    assert "limit is 4194304" in response.json()["detail"]
    assert classify(server, samples[0].read_bytes()).json()["digit"] == 0


def test_batching_and_engine_settings_are_honoured(small_model, tmp_path, samples):
    """BATCH_MAX_SIZE=2 on one worker: 24 concurrent requests are answered in model calls of at
    most 2 images, and some calls do hold 2; INFERENCE_ENGINE=tensorflow serves through TensorFlow."""
    with gunicorn(small_model.parent, tmp_path, workers=1, tensorflow=True, BATCH_MAX_SIZE="2",
                  BATCH_MAX_WAIT_MS="5", INFERENCE_ENGINE="tensorflow") as single:
        wait_until_ready(single)
        described = get(single, "/models/mnist-cnn").json()
        assert described["batching"] == {"max_batch_size": 2, "max_wait_ms": 5.0}
        assert described["engine"] == "tensorflow" and described["devices"][0].endswith("CPU:0")
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda digit: classify(single, samples[digit].read_bytes()), [2, 6] * 12))
        assert [answer.json()["digit"] for answer in answers] == [2, 6] * 12
        text = get(single, "/metrics").text
        calls = metric(text, "mnist_inference_batch_size_count", model="mnist-cnn")
        assert metric(text, "mnist_inference_batch_size_bucket", model="mnist-cnn", le="2.0") == calls, "none over 2"
        assert metric(text, "mnist_inference_batch_size_bucket", model="mnist-cnn", le="1.0") < calls, "some 2"
