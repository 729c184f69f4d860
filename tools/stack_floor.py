"""The benchmark's floor, not the service: the service's stack without the service.

    gunicorn -k uvicorn_worker.UvicornWorker -w 2 -b 127.0.0.1:PORT tools.stack_floor:app

(from the repository root add ``--config python:tools.stack_floor``, as ``command()`` does, so that
gunicorn does not read the service's gunicorn.conf.py.)

gunicorn with uvicorn's worker class, as many workers as the service ($WORKERS, default 2), and
one Starlette route, ``POST /mnist/classify``, that does what any upload route on this stack must:
parse the multipart body with Starlette (``await request.form()``), decode the uploaded PNG with
Pillow into 8-bit grey pixels, and answer a small JSON written by orjson (the image's size and
mean pixel). No model, no normalisation, no connexion, no middleware, no limits: what the server
would cost if the service added nothing. tools/benchmark.py (`make bench`) serves it after the
service, with the same wrk script, and prints the service's throughput as a share of it; its
``GET /health/ready`` lets the benchmark wait for it as it waits for the service.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def classify(request: Request) -> Response:
    async with request.form() as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return Response(b'{"error":"no file part"}', status_code=400, media_type="application/json")
        data = await upload.read()
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    return Response(orjson.dumps({"width": pixels.shape[1], "height": pixels.shape[0],
                                  "mean": float(pixels.mean())}),
                    media_type="application/json")


async def ready(_request: Request) -> Response:
    """Ready as soon as it answers: there is nothing to load (for tools.readiness, as the service)."""
    return Response(b'{"status":"ready"}', media_type="application/json")


app = Starlette(routes=[Route("/mnist/classify", classify, methods=["POST"]), Route("/health/ready", ready)])


def command(port: int, workers: int | None = None) -> list[str]:
    """The command that serves this app on 127.0.0.1:``port``, run from the repository root, with
    ``workers`` uvicorn workers (default $WORKERS, else 2, as the service's gunicorn.conf.py)."""
    workers = workers or int(os.environ.get("WORKERS", "2"))
    # gunicorn reads ./gunicorn.conf.py, the service's (its worker class, hooks and settings), unless
    # told another config; this module is one that sets nothing (none of its names is a setting).
    # Without a control socket, as the service: gunicorns started at once would share its one path.
    return [sys.executable, "-m", "gunicorn", "--config", "python:tools.stack_floor", "--no-control-socket",
            "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "tools.stack_floor:app"]
