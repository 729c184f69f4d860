"""Helpers the tests share: requests to a running server, and what its answers must look like."""

from __future__ import annotations

import json
import re

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
