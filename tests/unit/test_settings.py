"""The one settings object: read from the environment once, typed, checked by name, documented."""

import dataclasses
import re
from pathlib import Path

import pytest

from mnist_service import settings as settings_module
from mnist_service.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_setting_has_its_default_when_the_environment_names_none():
    given = Settings.from_env({})
    assert given == Settings()
    assert (given.batch_max_size, given.batch_max_wait_ms, given.engine) == (64, 0.0, "litert-int8")
    assert given.metrics_dir is None and given.model_dir == ROOT / "var" / "data"


def test_values_are_read_as_their_types():
    given = Settings.from_env({"BATCH_MAX_SIZE": "8", "BATCH_MAX_WAIT_MS": "2.5", "MODEL_DIR": "/models",
                               "INFERENCE_ENGINE": "tensorflow", "UNCERTAIN_BELOW": " 0.6 ",
                               "PROMETHEUS_MULTIPROC_DIR": "/tmp/metrics", "OTHER": "ignored"})
    assert (given.batch_max_size, given.batch_max_wait_ms, given.uncertain_below) == (8, 2.5, 0.6)
    assert given.model_dir == Path("/models") and given.metrics_dir == Path("/tmp/metrics")
    assert given.engine == "tensorflow"
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.batch_max_size = 1


@pytest.mark.parametrize("variable, value, message", [
    ("BATCH_MAX_SIZE", "abc", 'BATCH_MAX_SIZE is "abc"; it is a whole number of at least 1'),
    ("BATCH_MAX_SIZE", "0", "BATCH_MAX_SIZE is 0; it is a whole number of at least 1"),
    ("MAX_UPLOAD_BYTES", "4 MB", 'MAX_UPLOAD_BYTES is "4 MB"; it is a whole number of at least 1'),
    ("BATCH_MAX_WAIT_MS", "-1", "BATCH_MAX_WAIT_MS is -1.0; it is a number of at least 0"),
    ("UNCERTAIN_BELOW", "80%", 'UNCERTAIN_BELOW is "80%"; it is a number from 0 to 1'),
    ("UNCERTAIN_BELOW", "2", "UNCERTAIN_BELOW is 2.0; it is a number from 0 to 1"),
    ("INFERENCE_ENGINE", "onnx", "INFERENCE_ENGINE is 'onnx'; it is one of litert-int8, litert-float32, tensorflow"),
    ("DEFAULT_MODEL", "", "DEFAULT_MODEL is ''; it is a model name (not empty)"),
])
def test_a_bad_value_is_refused_naming_the_variable_and_what_it_accepts(variable, value, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env({variable: value})


def test_the_readme_lists_exactly_these_settings():
    """The README's configuration table is the one `python -m mnist_service.settings` prints."""
    readme = (ROOT / "README.md").read_text()
    assert settings_module.markdown_table() in readme
    listed = re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M)
    variables = [field.metadata["variable"] for field in dataclasses.fields(Settings)]
    assert listed[: len(variables)] == variables


def test_serving_reads_the_environment_only_through_the_settings():
    """Outside the settings module, gunicorn.conf.py, training and the tools, no code reads os.environ."""
    allowed = {"settings.py", "training.py", "mnist_data.py"}
    serving = [*sorted((ROOT / "mnist_service").glob("*.py")), ROOT / "server.py", ROOT / "mnist.py"]
    readers = [path.name for path in serving if path.name not in allowed and "os.environ" in path.read_text()]
    assert readers == []
