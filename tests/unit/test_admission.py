"""The worker's door (mnist_service.admission) around stand-in apps: at most MAX_IN_FLIGHT
inference requests run, the next wait in line in order, what cannot get a slot in time is shed,
and however a request ends its slot comes back."""

import asyncio
import json

import pytest

from mnist_service.admission import Door, Shed


def door_around(app, max_in_flight=2, max_queued=8, max_wait=1.0) -> Door:
    return Door(app, max_in_flight, max_queued, max_wait, Shed(max_in_flight, max_queued, max_wait * 1000))


def post(door: Door, path="/mnist/classify", method="POST"):
    """Call ``door`` with one request; the status it answered with (None if the app sent nothing)."""
    answered = []

    async def send(message):
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def call():
        await door({"type": "http", "method": method, "path": path}, None, send)
        return answered[0] if answered else None

    return call()


class Gate:
    """An app whose requests run until the test opens the gate, recording the order they started
    in and how many ran at once."""

    def __init__(self):
        self.opened = asyncio.Event()
        self.started = []
        self.running = self.most_running = 0

    async def __call__(self, scope, receive, send):
        self.started.append(scope.get("tag"))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.opened.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
        finally:
            self.running -= 1


def test_past_the_limit_requests_wait_in_line_and_each_is_served_in_order():
    async def scenario():
        gate = Gate()
        door = door_around(gate, max_in_flight=2)
        tasks = []
        for n in range(6):
            scope = {"type": "http", "method": "POST", "path": "/mnist/classify", "tag": n}
            tasks.append(asyncio.create_task(door(scope, None, _ignore)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert (door.held, door.queued) == (2, 4)
        gate.opened.set()
        await asyncio.gather(*tasks)
        return gate, door

    gate, door = asyncio.run(scenario())
    assert gate.started == list(range(6)), "first come, first served"
    assert gate.most_running == 2, "never more than MAX_IN_FLIGHT at once"
    assert (door.held, door.queued) == (0, 0)


def test_a_request_that_cannot_get_a_slot_in_time_is_shed_and_counts_nowhere():
    async def scenario():
        gate = Gate()
        door = door_around(gate, max_in_flight=1, max_wait=0.05)
        running = asyncio.create_task(post(door))
        await asyncio.sleep(0)
        waited = await post(door)  # waits 0.05 s in line, then shed
        assert (door.held, door.queued) == (1, 0)
        gate.opened.set()
        return waited, await running, door

    waited, served, door = asyncio.run(scenario())
    assert (waited, served) == (503, 200) and door.held == 0


def test_a_full_line_sheds_at_once_and_gets_are_never_held():
    async def scenario():
        gate = Gate()
        door = door_around(gate, max_in_flight=1, max_queued=1)
        first = asyncio.create_task(post(door))
        second = asyncio.create_task(post(door))
        await asyncio.sleep(0.01)
        shed = await asyncio.wait_for(post(door), 0.5)
        probe = asyncio.create_task(post(door, "/health/ready", method="GET"))
        await asyncio.sleep(0.01)
        assert gate.running == 2, "the GET runs beside the full door"
        gate.opened.set()
        return shed, await first, await second, await probe, door

    shed, *served, door = asyncio.run(scenario())
    assert shed == 503 and served == [200, 200, 200] and door.held == 0


def test_the_slot_comes_back_however_the_request_ends():
    async def fails(scope, receive, send):
        raise RuntimeError("the app failed")

    async def scenario():
        door = door_around(fails, max_in_flight=1)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await post(door)
        gate = Gate()
        door.app = gate
        running = asyncio.create_task(post(door))
        waiting = asyncio.create_task(post(door))
        await asyncio.sleep(0.01)
        waiting.cancel()  # a waiting request's task ended (the worker stops)
        await asyncio.gather(waiting, return_exceptions=True)
        assert (door.held, door.queued) == (1, 0)
        running.cancel()  # a running one's
        await asyncio.gather(running, return_exceptions=True)
        return door

    door = asyncio.run(scenario())
    assert (door.held, door.queued) == (0, 0)


def test_a_request_expected_to_wait_too_long_is_shed_without_waiting():
    async def scenario():
        gate = Gate()
        door = door_around(gate, max_in_flight=1, max_wait=1.0)
        door.seconds_held = 2.0  # each request recently held its slot 2 s: the line would take longer
        running = asyncio.create_task(post(door))
        await asyncio.sleep(0)
        shed = await asyncio.wait_for(post(door), 0.5)
        gate.opened.set()
        return shed, await running

    assert asyncio.run(scenario()) == (503, 200)


def test_a_shed_answer_is_a_503_with_retry_after_and_a_problem_or_the_protocols_error():
    shed = Shed(max_in_flight=7, max_queued=5, max_wait_ms=300)
    headers, body = shed.answer("/mnist/classify")
    assert (b"retry-after", b"1") in headers and (b"content-type", b"application/problem+json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
    problem = json.loads(body)
    assert problem["status"] == 503 and problem["title"] == "Overloaded"
    assert all(limit in problem["detail"] for limit in ("MAX_IN_FLIGHT", "MAX_QUEUED", "300 ms"))
    headers, body = shed.answer("/v1/models/mnist-cnn:predict")
    assert list(json.loads(body)) == ["error"] and (b"content-type", b"application/json") in headers


async def _ignore(message):
    pass
