"""Benchmark the real server: gunicorn with its default configuration, driven by wrk, beside the
bare stack it is built on.

    python -m tools.benchmark [--duration 10] [--connections 1,8,32] [--batch-files 64] [--model mnist-cnn]

Starts ``gunicorn -c gunicorn.conf.py server:app`` on a free port serving the trained models
(var/data/, or $MODEL_DIR), waits until every worker is ready, then runs wrk
(installed from Debian's packages when missing) with a multipart body: single 28x28 PNG uploads at
each connection count, then the batch route with ``--batch-files`` images a request at 8
connections, then the Open Inference Protocol's infer route with one PNG a request as tritonclient
sends it by default (a BYTES tensor in binary tensor data), at the largest connection count. With
the service stopped, it then serves the stack floor (tools.stack_floor: gunicorn, the same number of
uvicorn workers, a bare Starlette route that parses the multipart body and decodes the PNG) and
runs the same single-PNG script at the largest connection count. It prints req/s, p50, p99 and
errors of every run, the service's req/s and p99 beside the floor's and their ratio, each worker's
resident memory before and after, and the model's bare compute floor (the model called directly
by the server's engine, $INFERENCE_ENGINE, batch 1 and batch 64, one thread, as a worker runs it)
with the served throughput as a share of it, and what normalising one upload costs, in this
process (normalise.upload_to_pixels, from file bytes to 28x28 pixels): the 28x28 PNG, a
1-megapixel phone photo of a digit on paper (JPEG) and a 1-megapixel photo of a digit on ruled
paper (JPEG, the clutter search at work).

It ends with the targets, PASS or FAIL (figures of this machine and this run, not tests):
single PNGs at the largest connection count (32 by default) at least 45% of the stack floor's
req/s, without errors, and p99 at most 20 ms; at 1 connection p50 at most 1 ms; the batch route's
images/s at least 50% of the model compute floor times the workers. A target whose run was not
asked for (--connections without 1) is SKIP. The exit status is 1 if a target failed, else 0.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools import stack_floor
from tools.readiness import free_port, wait_until_ready, worker_rss_mb

ROOT = Path(__file__).resolve().parent.parent

BOUNDARY = "mnistbenchboundary"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk")


def multipart(field: str, files: list[bytes]) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"d{n}.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n"
        for n, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def binary_infer(png: bytes) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol infer body for one image file, as tritonclient sends it with its
    defaults: a JSON header, then the BYTES tensor's one element (its length, little-endian, and
    its bytes); the probabilities asked for in binary too. Its headers with it."""
    element = struct.pack("<I", len(png)) + png
    header = json.dumps({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(element)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }).encode()
    return header + element, {"Content-Type": "application/octet-stream",
                              "Inference-Header-Content-Length": str(len(header))}


def lua_script(body: bytes, folder: Path, name: str, headers: dict[str, str] | None = None) -> Path:
    """A wrk script that POSTs ``body``, as multipart/form-data unless ``headers`` say otherwise."""
    headers = headers or {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    escaped = "".join(f"\\{byte}" for byte in body)
    script = folder / f"{name}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        + "".join(f'wrk.headers["{key}"] = "{value}"\n' for key, value in headers.items())
        + f'wrk.body = "{escaped}"\n'
    )
    return script


def to_ms(value: str) -> float:
    """Milliseconds from a time as wrk prints it: 250.00us, 1.20ms, 20.01s, 1.00m, 2.00h."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[unit]


def run_wrk(wrk: str, url: str, script: Path, connections: int, duration: int) -> dict:
    output = subprocess.run(
        [wrk, "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s", "--latency",
         "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": to_ms(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99": to_ms(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def compute_floor(model_path: Path, sample: np.ndarray) -> dict[int, float]:
    """Images/s of the model called directly by the server's engine (INFERENCE_ENGINE), one thread."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mnist_service.classifier import Classifier
    from mnist_service.settings import Settings

    classifier = Classifier.load(model_path, settings=Settings.from_env())
    print(f"\nmodel compute floor: {model_path.name} run by {classifier.engine.name}", flush=True)
    floor = {}
    for size in (1, 64):
        batch = np.repeat(sample[None], size, axis=0)
        classifier.predict(batch)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3:
            classifier.predict(batch)
            runs += 1
        floor[size] = runs * size / (time.perf_counter() - started)
    return floor


def normalisation_costs(png: bytes) -> dict[str, float]:
    """Milliseconds to normalise one upload (the best mean of five rounds) of each kind: the 28x28
    PNG, a 1000x1000 photo of its digit on paper and one on ruled paper (JPEG, quality 85)."""
    from PIL import Image, ImageFilter

    from mnist_service import normalise
    from tools import realistic_uploads as uploads

    rng = np.random.default_rng(7)
    digit = np.asarray(Image.open(io.BytesIO(png)))
    mask = uploads.stroke_mask(digit, 400)
    photos = {}
    for name, ruled in (("1 MP photo, JPEG", False), ("1 MP photo on ruled paper, JPEG", True)):
        sheet = uploads.paper((1000, 1000), (235, 230, 220), rng, 4)
        if ruled:
            sheet = uploads.ink_on(sheet, uploads.lines_mask((1000, 1000), rng, 160, 0.8, 2), (150, 185, 235), (0, 0))
        sheet = uploads.ink_on(sheet, mask, (30, 40, 120), (250, 200))
        photos[name] = uploads.encode(uploads.to_image(sheet).filter(ImageFilter.GaussianBlur(1)), "JPEG", quality=85)
    costs = {}
    for name, data, rounds in (("28x28 PNG", png, 200), *((name, data, 10) for name, data in photos.items())):
        normalise.upload_to_pixels(data)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                normalise.upload_to_pixels(data)
            best = min(best, (time.perf_counter() - started) / rounds)
        costs[name] = best * 1000
    return costs


@dataclass
class Target:
    """One figure against its target; ``passed`` is None when its run was not asked for."""

    figure: str
    value: str
    target: str
    passed: bool | None

    def __str__(self) -> str:
        verdict = "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"
        return f"{verdict}  {self.figure}: {self.value} [target {self.target}]"


def row(route: str, connections: int, result: dict, images_per_request: int = 1) -> str:
    """A line of the results table."""
    return (f"{route:<32}{connections:>6}{result['rps']:>10.0f}{result['rps'] * images_per_request:>10.0f}"
            f"{result['p50']:>9.2f}{result['p99']:>9.2f}{result['errors']:>8}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to a gunicorn started in its own session: the master and its workers."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--batch-files", type=int, default=64)
    parser.add_argument("--model", default="mnist-cnn", help="the model to ask (?model=), default mnist-cnn")
    args = parser.parse_args()

    from mnist_service import normalise
    from mnist_service.artifacts import DEFAULT_MODEL_DIR

    model_dir = Path(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    model_path = model_dir / f"{args.model}.keras"
    if not model_path.exists():
        sys.exit(f"no model at {model_path}: train it first (make model)")
    wrk = ensure_wrk()
    png = (ROOT / "var" / "data" / "sample-7.png").read_bytes()
    workers = int(os.environ.get("WORKERS", "2"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODEL_DIR": str(model_dir)}
    folder = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    single_body = multipart("file", [png])
    single = lua_script(single_body, folder, "single")
    batch = lua_script(multipart("files", [png] * args.batch_files), folder, "batch")
    infer_body, infer_headers = binary_infer(png)
    infer = lua_script(infer_body, folder, "infer", infer_headers)
    connection_counts = [int(c) for c in args.connections.split(",")]
    most = max(connection_counts)
    header = f"{'route':<32}{'conns':>6}{'req/s':>10}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"

    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "server:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            ready_seconds = wait_until_ready(url, server, timeout=180, streak=10 * workers)
        except RuntimeError as error:
            sys.exit(f"{error}see {folder / 'server.log'}")
        query = f"?model={args.model}"
        run_wrk(wrk, f"{url}/mnist/classify{query}", single, 8, 2)  # warm-up
        rss_before = worker_rss_mb(server.pid)

        print(f"\nserver start to ready: {ready_seconds:.1f} s (then /health/ready answered 200 {10 * workers} "
              "times in a row, each on a new connection)")
        print(f"server: gunicorn, {workers} uvicorn workers (default gunicorn.conf.py), model {args.model}; "
              f"load: wrk on the same machine, {args.duration} s a run; {os.cpu_count()} CPUs", flush=True)
        print(header)
        results = {}
        for connections in connection_counts:
            results[connections] = run_wrk(wrk, f"{url}/mnist/classify{query}", single, connections, args.duration)
            print(row("/mnist/classify (28x28 PNG)", connections, results[connections]), flush=True)
        batch_result = run_wrk(wrk, f"{url}/mnist/classify/batch{query}", batch, 8, args.duration)
        batch_images = batch_result["rps"] * args.batch_files
        print(row(f"/mnist/classify/batch ({args.batch_files} PNGs)", 8, batch_result, args.batch_files), flush=True)
        infer_result = run_wrk(wrk, f"{url}/v2/models/{args.model}/infer", infer, most, args.duration)
        print(row("/v2/.../infer (BYTES, binary)", most, infer_result), flush=True)
        rss_after = worker_rss_mb(server.pid)
    finally:
        stop(server)

    # The floor runs alone, after the service has stopped, so that the two do not share the cores.
    floor_port = free_port()
    floor_base = f"http://127.0.0.1:{floor_port}"
    floor_url = f"{floor_base}/mnist/classify"
    floor_log_path = folder / "stack-floor.log"
    floor_log = open(floor_log_path, "w")
    floor_server = subprocess.Popen(stack_floor.command(floor_port, workers), cwd=ROOT, env=os.environ.copy(),
                                    stdout=floor_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_until_ready(floor_base, floor_server, timeout=60, streak=10 * workers)
        except RuntimeError as error:
            sys.exit(f"the stack floor did not serve ({error}): see {floor_log_path}")
        run_wrk(wrk, floor_url, single, 8, 2)  # warm-up
        floor_result = run_wrk(wrk, floor_url, single, most, args.duration)
    finally:
        stop(floor_server)
    service_result = results[most]
    floor_share = service_result["rps"] / floor_result["rps"]
    print(f"\nstack floor: gunicorn, {workers} uvicorn workers, tools.stack_floor (Starlette multipart parse, "
          "Pillow decode, orjson answer; no model, no connexion), alone, after the service stopped")
    print(header)
    print(row("stack floor /mnist/classify", most, floor_result))
    print(f"service / stack floor at {most} connections: {service_result['rps']:.0f} / {floor_result['rps']:.0f} "
          f"req/s = {floor_share:.1%}; p99 {service_result['p99']:.2f} / {floor_result['p99']:.2f} ms "
          f"= {service_result['p99'] / floor_result['p99']:.1f}x", flush=True)

    pixels = normalise.upload_to_pixels(png)
    floor = compute_floor(model_path, pixels)
    machine_floor = floor[64] * workers
    print(f"\nworker memory (RSS, MB): {', '.join(f'{m:.0f}' for m in rss_before)} after warm-up -> "
          f"{', '.join(f'{m:.0f}' for m in rss_after)} after the runs")
    print(f"model compute floor, one thread: {floor[1]:.0f} images/s at batch 1, {floor[64]:.0f} at batch 64; "
          f"x{workers} workers = {machine_floor:.0f} images/s")
    best = max(r["rps"] for r in results.values())
    print(f"served single-image throughput {best:.0f} req/s = {best / machine_floor:.0%} of the model compute floor; "
          f"batch route {batch_images:.0f} images/s = {batch_images / machine_floor:.0%}")
    print("normalising one upload (this process, one thread): "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in normalisation_costs(png).items()))

    one = results.get(1)
    targets = [
        Target(f"single PNG req/s at {most} connections / stack floor's",
               f"{service_result['rps']:.0f} / {floor_result['rps']:.0f} = {floor_share:.1%}, "
               f"errors {service_result['errors']}",
               ">= 45%, no errors", floor_share >= 0.45 and service_result["errors"] == 0),
        Target(f"single PNG p99 at {most} connections", f"{service_result['p99']:.2f} ms", "<= 20 ms",
               service_result["p99"] <= 20),
        Target("single PNG p50 at 1 connection", "not run (--connections lacks 1)" if one is None
               else f"{one['p50']:.2f} ms", "<= 1 ms", None if one is None else one["p50"] <= 1),
        Target(f"batch route ({args.batch_files} PNGs, 8 connections) images/s / model compute floor x{workers}",
               f"{batch_images:.0f} / {machine_floor:.0f} = {batch_images / machine_floor:.0%}", ">= 50%",
               batch_images / machine_floor >= 0.5),
    ]
    print("\ntargets (benchmark figures of this machine and run, not tests):")
    for target in targets:
        print(f"  {target}")
    failed = sum(target.passed is False for target in targets)
    print(f"{sum(target.passed is True for target in targets)} of {len(targets)} targets met"
          + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
