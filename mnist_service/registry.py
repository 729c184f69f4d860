"""The registry of a worker's models: every model of the model folder, loaded in the background.

TensorFlow is not fork-safe, so nothing here runs at import time: the server's lifespan creates a
:class:`ModelRegistry` inside each worker after gunicorn has forked it, with one :class:`ModelSlot`
per model file of the folder. Each slot reads its model's metadata at once (a missing or
mismatched model stops the worker with a clear error) and loads the model in a background thread,
so the worker answers ``/health/ready`` with 503 until every model is loaded and warm.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path

from mnist_service import artifacts, metrics
from mnist_service.classifier import Classifier
from mnist_service.errors import ModelNotReady, NoSuchModel
from mnist_service.settings import Settings

log = logging.getLogger(__name__)


class ModelSlot:
    """One worker's model: metadata at once, the model itself loaded in a background thread."""

    def __init__(self, model_path: Path, settings: Settings):
        self.path = Path(model_path)
        self.settings = settings
        self.metadata = artifacts.read_metadata(self.path)
        self.classifier: Classifier | None = None
        self.error: str | None = None
        self._done = threading.Event()

    def start_loading(self) -> ModelSlot:
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.classifier = Classifier.load(self.path, self.metadata, self.settings)
        except Exception as error:  # reported by /health/ready and in the log
            self.error = f"loading {self.path} failed: {type(error).__name__}: {error}"
            log.exception("model load failed")
        else:
            # The app, its libraries and the models leave many long-lived objects (a few hundred
            # thousand with the tensorflow engine) that every full collection would walk, a latency
            # spike for each request in flight; frozen, the collector skips them.
            gc.freeze()
            seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.set(seconds)
            log.info("loaded %s version %s from %s in %.2f s (%s on %s)", self.metadata["name"],
                     self.metadata["version"], self.path, seconds, self.classifier.engine.name,
                     ", ".join(self.classifier.engine.devices))
        finally:
            self._done.set()

    @property
    def state(self) -> str:
        """'loading', 'ready' or 'failed'."""
        if not self._done.is_set():
            return "loading"
        return "ready" if self.classifier else "failed"

    def reason(self) -> str:
        """Why the model is not ready (empty when it is)."""
        return {
            "loading": f"model {self.metadata['name']} is still loading",
            "failed": self.error or "",
            "ready": "",
        }[self.state]

    def get(self, timeout: float) -> Classifier:
        """The classifier, waiting up to ``timeout`` seconds for it to load; ModelNotReady if it
        does not."""
        self._done.wait(timeout)
        if self.classifier is None:
            raise ModelNotReady(self.reason())
        return self.classifier


class ModelRegistry:
    """Every model of the model folder, by name; one of them, ``default``, answers requests that
    name no model."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = settings.model_dir
        self.slots: dict[str, ModelSlot] = {}
        for path in artifacts.model_files(self.folder):
            slot = ModelSlot(path, settings)
            name = slot.metadata["name"]
            if name in self.slots:
                raise ValueError(f'{path} and {self.slots[name].path} are both named "{name}"')
            self.slots[name] = slot
        if settings.default_model not in self.slots:
            raise ValueError(f'the default model "{settings.default_model}" (DEFAULT_MODEL) is not in '
                             f"{self.folder}; it holds {', '.join(self.slots)}")
        self.default = settings.default_model

    def start_loading(self) -> ModelRegistry:
        for slot in self.slots.values():
            slot.start_loading()
        return self

    def slot(self, name: str | None = None) -> ModelSlot:
        """The slot of the model called ``name`` (the default model for None); NoSuchModel if none."""
        try:
            return self.slots[name or self.default]
        except KeyError:
            raise NoSuchModel(name) from None

    def names(self) -> list[str]:
        """The models' names, the default first."""
        return sorted(self.slots, key=lambda name: (name != self.default, name))

    @property
    def state(self) -> str:
        """'ready' once every model is, 'failed' if any failed, else 'loading'."""
        states = {slot.state for slot in self.slots.values()}
        return "failed" if "failed" in states else "loading" if "loading" in states else "ready"

    def reason(self) -> str:
        """Why the registry is not ready (empty when it is)."""
        return "; ".join(slot.reason() for slot in self.slots.values() if slot.reason())
