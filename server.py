"""The MNIST digit service: a connexion app built from the OpenAPI spec ``models.yaml``.

gunicorn serves the module-level ``app`` (see gunicorn.conf.py); tests call ``create_app``;
``python server.py`` runs it with uvicorn for debugging. The model loads in each worker's
lifespan startup, after the fork, and the worker takes requests only once it is warm.
"""

import contextlib
import logging
import os
from pathlib import Path

import connexion

from train_mnist import DEFAULT_OUT as DEFAULT_MODEL

HERE = Path(__file__).resolve().parent


def create_app(model_path: str | os.PathLike | None = None) -> connexion.AsyncApp:
    """The app, serving the model at ``model_path`` (default ``$MODEL_PATH``, else var/data/)."""
    model_path = Path(model_path or os.environ.get("MODEL_PATH") or DEFAULT_MODEL)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        from classifier import Classifier

        yield {"classifier": Classifier.load(model_path)}

    app = connexion.AsyncApp(__name__, specification_dir=HERE, lifespan=lifespan)
    app.add_api("models.yaml")
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
app = create_app()

if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
