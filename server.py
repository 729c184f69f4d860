"""The MNIST digit service: a connexion app built from the OpenAPI spec ``models.yaml``.

gunicorn serves the module-level ``app`` (see gunicorn.conf.py), made from the settings read from
the environment once, here; tests call ``create_app`` with their own; ``python server.py`` runs it
with uvicorn for debugging. Each worker's lifespan, after the fork, creates the registry of its
models, which reads their metadata and loads them in the background (mnist_service.registry).
"""

import argparse
import contextlib
import logging
import warnings
from pathlib import Path

# connexion imports starlette's test client at start-up, which warns about httpx on every import.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
import connexion  # noqa: E402
import orjson  # noqa: E402
from connexion.exceptions import ProblemException  # noqa: E402
from connexion.http_facts import HTTP_STATUS_CODES  # noqa: E402
from connexion.lifecycle import ConnexionResponse  # noqa: E402
from connexion.middleware import MiddlewarePosition  # noqa: E402
from connexion.middleware.exceptions import ExceptionMiddleware  # noqa: E402
from connexion.problem import problem  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

from mnist_service import open_inference, operations, tf_serving  # noqa: E402
from mnist_service.errors import ServiceError  # noqa: E402
from mnist_service.jsonifier import OrjsonJsonifier  # noqa: E402
from mnist_service.lifecycle import Lifecycle  # noqa: E402
from mnist_service.middleware import RequestLimits, RequestObserver  # noqa: E402
from mnist_service.registry import ModelRegistry  # noqa: E402
from mnist_service.settings import Settings  # noqa: E402
from mnist_service.validators import VALIDATOR_MAP  # noqa: E402

HERE = Path(__file__).resolve().parent


def _error_json(body: dict, status: int, headers) -> ConnexionResponse:
    return ConnexionResponse(status_code=status, body=orjson.dumps(body), content_type="application/json",
                             headers=dict(headers or {}) or None)


async def service_error(request, error: ServiceError):
    """Any of the service's errors as the RFC 7807 problem of its status and title; on TF Serving's
    routes and the Open Inference Protocol's, as their ``{"error": ...}``. (Async: connexion runs a
    plain function in a thread, a hand-over that a shed request cannot afford.)"""
    if request.url.path.startswith("/v1/"):
        return _error_json(*tf_serving.error_body(error), error.headers)
    if open_inference.is_route(request.url.path):
        return _error_json(*open_inference.error_body(error), error.headers)
    return problem(error.status, error.title, str(error), headers=dict(error.headers) or None)


async def connexion_problem(request, error: HTTPException):
    """connexion's own refusals (request validation, routing: 400, 404, 405, 415) as the Open
    Inference Protocol's ``{"error": ...}`` on its routes, whose clients read nothing else; elsewhere
    the problem JSON connexion answers them with."""
    if isinstance(error, ProblemException):
        status, detail = error.status, error.detail or error.title
    else:
        status, detail = error.status_code, error.detail
    if open_inference.is_route(request.url.path):
        return _error_json({"error": detail}, status, error.headers)
    if isinstance(error, ProblemException):
        return ExceptionMiddleware.problem_handler(request, error)
    return problem(status, HTTP_STATUS_CODES.get(status), detail, headers=error.headers)


def create_app(settings: Settings) -> connexion.AsyncApp:
    """The app, serving every model in ``settings.model_dir``. Its ``settings`` and ``lifecycle``
    (the drain) are attributes too, for the gunicorn worker (mnist_service.worker), which drains
    and sheds."""
    lifecycle = Lifecycle(settings.drain_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield {"models": ModelRegistry(settings).start_loading(), "settings": settings, "lifecycle": lifecycle}

    app = connexion.AsyncApp(__name__, specification_dir=HERE, lifespan=lifespan, jsonifier=OrjsonJsonifier(),
                             middlewares=operations.middlewares())
    operations.install(app)
    app.add_api("models.yaml", validator_map=VALIDATOR_MAP)
    app.add_error_handler(ServiceError, service_error)
    app.add_error_handler(ProblemException, connexion_problem)
    app.add_error_handler(HTTPException, connexion_problem)
    app.add_middleware(RequestObserver, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(RequestLimits, position=MiddlewarePosition.BEFORE_ROUTING,
                       max_bytes=settings.max_upload_bytes, body_timeout=settings.body_timeout_seconds,
                       request_timeout=settings.request_timeout_seconds)
    app.settings, app.lifecycle = settings, lifecycle
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
app = create_app(Settings.from_env())

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the service with uvicorn, for debugging.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    arguments = parser.parse_args()
    app.run(host=arguments.host, port=arguments.port)
