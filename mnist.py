"""HTTP handlers for the routes in models.yaml, each named by its operationId.

A handler turns HTTP input into a domain call and the result into JSON; routing, request
validation and error rendering are connexion's, and the service's errors (mnist_service.errors)
become RFC 7807 problems in the one handler ``server.py`` registers. The worker's models are
``request.state.models`` (a registry.ModelRegistry) and its settings ``request.state.settings``,
both set by the server's lifespan. Every inference route hands its items to the model's
micro-batcher. The TF Serving and Open Inference Protocol routes answer their errors in their
protocols' ``{"error": ...}`` instead of problems.
"""

import functools
from pathlib import Path

import numpy as np
import yaml
from anyio import to_thread
from connexion import request

from mnist_service import answers, artifacts, metrics, open_inference, tf_serving
from mnist_service.classifier import Classified, Classifier
from mnist_service.errors import ModelNotReady, NoReport, NotReady, UploadError, problem

# The spec declares problem JSON for errors too, so a handler names the content type of its answer.
JSON = {"Content-Type": "application/json"}
# The drawing page served at GET / (one self-contained file: no build step, nothing fetched elsewhere).
PAGE = Path(__file__).resolve().parent / "web" / "index.html"
SPEC = Path(__file__).resolve().parent / "models.yaml"


async def _classifier(state, name: str | None) -> Classifier:
    """The named model (NoSuchModel if none) of the worker whose request ``state`` is, waiting off
    the event loop while it loads (up to MODEL_WAIT_SECONDS, then ModelNotReady)."""
    slot = state.models.slot(name)
    if slot.classifier is not None:
        return slot.classifier
    return await to_thread.run_sync(slot.get, state.settings.model_wait_seconds)


def _upload_results(outcomes: list) -> list[Classified | UploadError]:
    """The classifier's outcomes for uploads; an error that is not the upload's fault is raised (500)."""
    for outcome in outcomes:
        if isinstance(outcome, Exception) and not isinstance(outcome, UploadError):
            raise outcome
    return outcomes


def _shown(answer: dict, outcome: Classified, show_input: bool) -> dict:
    """``answer``, with what the model was given (show_input=true) added."""
    return {**answer, "input": answers.model_input(outcome.found)} if show_input else answer


async def classify(file, model=None, show_input=False):
    """POST /mnist/classify: one uploaded image -> its digit and class probabilities (and, asked
    show_input, what the model was given)."""
    state = request.state  # connexion's request is made anew at each use: once here
    classifier = await _classifier(state, model)
    (result,) = _upload_results(await classifier.submit([file.file.read()], with_input=True))
    if isinstance(result, UploadError):
        raise result
    answer = answers.answer(result.probabilities, classifier.metadata, state.settings.uncertain_below)
    state.digits = [answer["digit"]]
    return _shown(answer, result, show_input), 200, JSON


async def classify_batch(files, model=None, show_input=False):
    """POST /mnist/classify/batch: several images -> one result each, in order; an image that
    cannot be read gets its problem in its place."""
    state = request.state
    classifier = await _classifier(state, model)
    outcomes = _upload_results(await classifier.submit([file.file.read() for file in files], with_input=True))
    readable = [outcome for outcome in outcomes if not isinstance(outcome, UploadError)]
    found = iter(answers.answers(np.stack([outcome.probabilities for outcome in readable]), classifier.metadata,
                                 state.settings.uncertain_below) if readable else ())
    results = [{"filename": file.filename, "error": problem(outcome)} if isinstance(outcome, UploadError)
               else {"filename": file.filename, **_shown(next(found), outcome, show_input)}
               for file, outcome in zip(files, outcomes)]
    state.digits = [result["digit"] for result in results if "digit" in result]
    return {"results": results, "model": classifier.metadata["name"],
            "model_version": classifier.metadata["version"]}, 200, JSON


def draw_page():
    """GET /: the drawing page, which posts the canvas to /mnist/classify once per model."""
    return PAGE.read_text(encoding="utf-8"), 200, {"Content-Type": "text/html; charset=utf-8"}


def live():
    """GET /health/live: the process is up and serving HTTP."""
    return {"status": "alive"}, 200, JSON


def _ready_models():
    """The worker's models once every one is loaded and warm; NotReady (503) while they load, or
    from the moment the worker begins to drain (mnist_service.lifecycle)."""
    if request.state.lifecycle.draining:
        raise NotReady("the server is shutting down: it finishes what it holds, and takes no more")
    models = request.state.models
    if models.state != "ready":
        raise NotReady(models.reason())
    return models


def ready():
    """GET /health/ready: 200 once every model of this worker is loaded and warm, else 503 and why;
    503 from the moment the worker begins to drain (mnist_service.lifecycle)."""
    models = _ready_models()
    default = models.slot().metadata
    return {"status": "ready", "model": default["name"], "version": default["version"],
            "models": sorted(models.slots)}, 200, JSON


def prometheus_metrics():
    """GET /metrics: Prometheus text format, summed over all workers."""
    return metrics.exposition(request.state.settings.metrics_dir), 200, {"Content-Type": metrics.CONTENT_TYPE}


def list_models():
    """GET /models: every model this server serves, the default first."""
    models = request.state.models
    return {"models": [answers.description(models.slot(name), name == models.default)
                       for name in models.names()]}, 200, JSON


def get_model(name):
    """GET /models/{name}: one model's metadata."""
    models = request.state.models
    return answers.description(models.slot(name), name == models.default), 200, JSON


def get_model_report(name):
    """GET /models/{name}/report: the training report written beside the model."""
    path = artifacts.report_path(request.state.models.slot(name).path)
    if not path.is_file():
        raise NoReport(f"{name} has no training report ({path.name}): retrain it to write one (make retrain)")
    return path.read_text(encoding="utf-8"), 200, {"Content-Type": "text/html; charset=utf-8"}


async def tf_serving_predict(name, body):
    """POST /v1/models/{name}:predict: TensorFlow Serving's REST predict API; its errors are
    answered as TF Serving's ``{"error": ...}`` (server.service_error)."""
    state = request.state
    classifier = await _classifier(state, name)
    items, key = tf_serving.parse_predict_request(body, state.settings.max_instances)
    probabilities = tf_serving.probabilities(await classifier.submit(items))
    state.digits = probabilities.argmax(axis=1).tolist()
    return tf_serving.predict_response(probabilities, key), 200, JSON


def tf_serving_status(name):
    """GET /v1/models/{name}: TensorFlow Serving's model status."""
    slot = request.state.models.slot(name)
    return tf_serving.status_body(slot.state, slot.metadata["version"], slot.error), 200, JSON


@functools.cache
def _api_version() -> str:
    """The version of this API (models.yaml's info.version), read once."""
    return yaml.load(SPEC.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
                     )["info"]["version"]


def open_inference_server_metadata():
    """GET /v2: the Open Inference Protocol's server metadata (its extensions: binary tensor data)."""
    return open_inference.server_metadata(_api_version()), 200, JSON


def open_inference_live():
    """GET /v2/health/live: the process is up and serving HTTP."""
    return {"live": True}, 200, JSON


def open_inference_ready():
    """GET /v2/health/ready: as /health/ready, 200 once every model is loaded and warm, else 503."""
    _ready_models()
    return {"ready": True}, 200, JSON


def _served_slot(name: str, version: str | None):
    """The slot of model ``name`` (404 if none), if ``version`` is its served one or None (else 404)."""
    slot = request.state.models.slot(name)
    open_inference.check_version(slot.metadata, version)
    return slot


def open_inference_model_metadata(name, version=None):
    """GET /v2/models/{name}[/versions/{version}]: the model's inputs, outputs and version."""
    slot = _served_slot(name, version)
    return open_inference.model_metadata(slot.metadata, request.state.settings.engine), 200, JSON


def open_inference_model_ready(name, version=None):
    """GET /v2/models/{name}[/versions/{version}]/ready: 200 once the model is loaded and warm, else 503."""
    slot = _served_slot(name, version)
    if slot.state != "ready":
        raise ModelNotReady(slot.reason())
    return {"name": name, "ready": True}, 200, JSON


async def open_inference_infer(name, version=None):
    """POST /v2/models/{name}[/versions/{version}]/infer: the Open Inference Protocol's inference, its
    body JSON or, by the binary tensor data extension, a JSON header and raw tensor bytes (read here
    whole: connexion validates only a JSON body, mnist_service.open_inference parses both)."""
    _served_slot(name, version)
    state = request.state
    parsed = open_inference.parse_infer_request(await request.body(), request.headers.get(open_inference.HEADER_LENGTH),
                                                state.settings.max_instances)
    classifier = await _classifier(state, name)
    probabilities = open_inference.probabilities(await classifier.submit(parsed.items))
    state.digits = probabilities.argmax(axis=1).tolist()
    body, headers = open_inference.infer_response(probabilities, parsed, classifier.metadata)
    return body, 200, headers


# The versioned routes have operationIds of their own (the metrics' route label), the same handlers.
open_inference_model_version_metadata = open_inference_model_metadata
open_inference_model_version_ready = open_inference_model_ready
open_inference_model_version_infer = open_inference_infer
