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
from connexion.middleware import MiddlewarePosition  # noqa: E402
from connexion.problem import problem  # noqa: E402

from mnist_service.errors import ServiceError  # noqa: E402
from mnist_service.jsonifier import OrjsonJsonifier  # noqa: E402
from mnist_service.middleware import BodySizeLimit, RequestObserver  # noqa: E402
from mnist_service.registry import ModelRegistry  # noqa: E402
from mnist_service.settings import Settings  # noqa: E402
from mnist_service.validators import VALIDATOR_MAP  # noqa: E402

HERE = Path(__file__).resolve().parent


def service_error(_request, error: ServiceError):
    """Any of the service's errors as the RFC 7807 problem of its status and title."""
    return problem(error.status, error.title, str(error), headers=error.headers or None)


def create_app(settings: Settings) -> connexion.AsyncApp:
    """The app, serving every model in ``settings.model_dir``."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield {"models": ModelRegistry(settings).start_loading(), "settings": settings}

    app = connexion.AsyncApp(__name__, specification_dir=HERE, lifespan=lifespan, jsonifier=OrjsonJsonifier())
    app.add_api("models.yaml", validator_map=VALIDATOR_MAP)
    app.add_error_handler(ServiceError, service_error)
    app.add_middleware(RequestObserver, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(BodySizeLimit, position=MiddlewarePosition.BEFORE_SWAGGER,
                       max_bytes=settings.max_upload_bytes)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
app = create_app(Settings.from_env())

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the service with uvicorn, for debugging.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    arguments = parser.parse_args()
    app.run(host=arguments.host, port=arguments.port)
