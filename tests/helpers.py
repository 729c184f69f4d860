"""Helpers the tests share: requests to a running server, and what its answers must look like."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import httpx


def get(server, path: str, **kwargs) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kwargs)


def classify(server, content: bytes, filename: str = "digit.png", field: str = "file", headers=None,
             **params) -> httpx.Response:
    """POST one file to /mnist/classify, with ``params`` as the query (``model=...``)."""
    return httpx.post(f"{server.url}/mnist/classify", files={field: (filename, content)}, params=params,
                      headers=headers, timeout=30)


def classify_batch(server, parts: list[tuple[str, bytes]], **params) -> httpx.Response:
    """POST (filename, bytes) parts to /mnist/classify/batch."""
    return httpx.post(f"{server.url}/mnist/classify/batch", files=[("files", part) for part in parts],
                      params=params, timeout=60)


def predict(server, body, name: str = "mnist-cnn") -> httpx.Response:
    """POST a TF Serving predict body; encoded by Python's json, which writes NaN as clients may send it."""
    return httpx.post(f"{server.url}/v1/models/{name}:predict", content=json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=30)


def assert_problem(response: httpx.Response, status: int, detail_contains: str) -> None:
    """The response is an RFC 7807 problem of ``status`` whose detail says ``detail_contains``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"]
    assert detail_contains in problem["detail"]


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def copy_model(model: Path, folder: Path) -> None:
    """Copy a model's files (the .keras file, its flatbuffers and its metadata) into ``folder``."""
    for path in model.parent.glob(f"{model.stem}.*"):
        shutil.copy(path, folder / path.name)


def copy_model_broken(model: Path, folder: Path) -> dict:
    """Copy a model into ``folder`` with its served flatbuffer replaced by bytes that are not a
    LiteRT model, and its metadata's checksum made to match them, so that the load fails, not the
    check of the files; the copy's metadata."""
    copy_model(model, folder)
    broken = folder / f"{model.stem}.int8.tflite"
    broken.write_bytes(b"this is not a LiteRT flatbuffer")
    metadata = json.loads(model.with_suffix(".json").read_text())
    metadata["litert"]["int8"]["sha256"] = hashlib.sha256(broken.read_bytes()).hexdigest()
    (folder / f"{model.stem}.json").write_text(json.dumps(metadata))
    return metadata


def wait_for_failed_load(server, path: str, timeout: float = 120) -> httpx.Response:
    """The answer of ``path`` once it says that the model failed to load (a load is tried in the
    background after start-up), or the last answer when ``timeout`` seconds pass first."""
    deadline, answer = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            answer = get(server, path)
            if "failed" in answer.text:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    assert answer is not None, f"{path} never answered: {server.log_text()}"
    return answer


def access_log(server, text_after: int = 0, until=lambda entries: True, timeout: float = 5) -> list[dict]:
    """The access log's entries (JSON lines) of ``server``'s log after its first ``text_after``
    characters, once ``until(entries)`` holds, or as they are when ``timeout`` seconds pass first: a
    worker writes its lines a tenth of a second at a time."""
    deadline = time.monotonic() + timeout
    while True:
        # Split on newlines only: the fuzzer's paths may hold other characters splitlines() splits on;
        # what follows the last newline may be a line still being written.
        entries = [json.loads(line) for line in server.log_text()[text_after:].split("\n")[:-1]
                   if line.startswith('{"time"')]
        if until(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)
