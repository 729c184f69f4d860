"""Malformed, hostile and odd-but-valid uploads (the corpus of tests/malformed.py) against the real
server: each, alone and all of them in one batch, gets its own answer in bounded time, an RFC 7807
problem that says what is wrong with it (never a 5xx) or its digit; and the server is unharmed after
them: it still classifies, its workers are the ones it had (none killed, none restarted), its log
has no 5xx and no traceback."""

from __future__ import annotations

import time

import pytest

from tests import malformed
from tests.helpers import access_log, assert_problem, classify, classify_batch
from tools.readiness import worker_pids

CASES = malformed.corpus()
# Seconds the server may take to answer one corpus file, and the batch of all of them: the
# normalisation's bound (tests/unit/test_malformed.py) and room for HTTP and a busy machine.
ANSWER_BOUND = 5.0
BATCH_BOUND = 20.0


@pytest.fixture(scope="module")
def before(server) -> dict:
    """The server as the corpus finds it: its workers and how much of its log was written."""
    return {"workers": sorted(worker_pids(server.process.pid)), "log_offset": len(server.log_text())}


def assert_problem_of(problem: dict, case: malformed.Case) -> None:
    """A problem (RFC 7807, as the batch route gives it) of the status and detail ``case`` must get."""
    assert problem["type"] == "about:blank" and problem["title"] == case.error.title
    assert problem["status"] == case.status, (case.name, problem)
    assert case.detail in problem["detail"], (case.name, problem)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_upload_gets_its_answer(server, before, case):
    started = time.monotonic()
    response = classify(server, case.data, filename=f"{case.name}.bin")
    elapsed = time.monotonic() - started
    if case.error is None:
        assert response.status_code == 200, (case.name, response.text)
        assert response.json()["digit"] == case.digit, (case.name, response.json())
    else:
        assert_problem(response, case.status, case.detail)
        assert_problem_of(response.json(), case)
    assert elapsed < ANSWER_BOUND, f"{case.name} took {elapsed:.2f} s"


def test_all_of_them_in_one_batch_get_their_answers(server, before):
    parts = [(f"{case.name}.bin", case.data) for case in CASES]
    assert sum(len(data) for _, data in parts) < 4_000_000, "the batch fits in MAX_UPLOAD_BYTES (4 MiB)"
    started = time.monotonic()
    response = classify_batch(server, parts)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["filename"] for result in results] == [name for name, _ in parts]
    for case, result in zip(CASES, results, strict=True):
        if case.error is None:
            assert result.get("digit") == case.digit, (case.name, result)
        else:
            assert "digit" not in result, (case.name, result)
            assert_problem_of(result["error"], case)
    assert elapsed < BATCH_BOUND, f"the batch took {elapsed:.2f} s"


def test_the_server_is_unharmed_after_them(server, before, samples):
    assert classify(server, samples[7].read_bytes()).json()["digit"] == 7
    assert sorted(worker_pids(server.process.pid)) == before["workers"], "a worker died or was restarted"
    log = server.log_text()[before["log_offset"] :]
    for sign in ("SIGKILL", "WORKER TIMEOUT", "Booting worker", "Worker exiting", "Traceback"):
        assert sign not in log, f"the server log says {sign!r}:\n{log[-3000:]}"
    entries = access_log(server, before["log_offset"], until=lambda entries: len(entries) >= len(CASES) + 2)
    statuses = [entry["status"] for entry in entries]
    assert len(statuses) >= len(CASES) + 2, "every request was logged"
    assert max(statuses) < 500, [status for status in statuses if status >= 500]
