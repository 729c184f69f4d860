"""The MNIST digit service: a connexion app built from the OpenAPI spec ``models.yaml``.

gunicorn serves the module-level ``app`` (see gunicorn.conf.py); tests call ``create_app``;
``python server.py`` runs it with uvicorn for debugging. Each worker's lifespan, after the fork,
reads the metadata of every model in the model folder and starts loading them in the background
(see classifier).
"""

import contextlib
import logging
import os
import warnings
from pathlib import Path

# connexion imports starlette's test client at start-up, which warns about httpx on every import.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
import connexion  # noqa: E402
import orjson  # noqa: E402
from connexion.jsonifier import Jsonifier, JSONEncoder  # noqa: E402
from connexion.middleware import MiddlewarePosition  # noqa: E402

from middleware import BodySizeLimit, RequestObserver  # noqa: E402
from train_mnist import MODEL_DIR  # noqa: E402
from validators import VALIDATOR_MAP  # noqa: E402

HERE = Path(__file__).resolve().parent


class OrjsonJsonifier(Jsonifier):
    """connexion's Jsonifier writing with orjson: the same JSON values, compact, at a fifteenth of
    the cost (a batch answer of 64 results: 23 us against 368 us; on /mnist/classify/batch that
    was a tenth of the event loop's time). Types orjson does not know, dates included, go to
    connexion's own encoder, as before; reading JSON is connexion's own."""

    OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    CONNEXION_DEFAULT = JSONEncoder().default  # made once, not per answer

    def dumps(self, data, **kwargs):
        if kwargs:  # an option only the json module knows
            return super().dumps(data, **kwargs)
        return orjson.dumps(data, default=self.CONNEXION_DEFAULT, option=self.OPTIONS).decode() + "\n"


def create_app(model_dir: str | os.PathLike | None = None) -> connexion.AsyncApp:
    """The app, serving every model in ``model_dir`` (default ``$MODEL_DIR``, else var/data/)."""
    model_dir = Path(model_dir or os.environ.get("MODEL_DIR") or MODEL_DIR)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        from classifier import ModelShelf

        yield {"models": ModelShelf(model_dir).start_loading()}

    app = connexion.AsyncApp(__name__, specification_dir=HERE, lifespan=lifespan, jsonifier=OrjsonJsonifier())
    app.add_api("models.yaml", validator_map=VALIDATOR_MAP)
    app.add_middleware(RequestObserver, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(BodySizeLimit, position=MiddlewarePosition.BEFORE_SWAGGER)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
app = create_app()

if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
