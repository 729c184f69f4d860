# The MNIST digit service.
#   make serve      create .venv, train the models if var/data/ has none, serve them with gunicorn
#   make test       the whole test suite, the full-accuracy checks of the real models included
#   make test-fast  the suite without the full-accuracy checks (edit-test loop)
#   make model      train the models missing from var/data/: mnist-cnn, mnist-dense
#   make retrain    train both models again
#   make samples    rewrite var/data/sample-*.png from the MNIST test split
#   make uploads    the model's accuracy on realistic uploads, per style (tools/realistic_uploads.py)
#   make training-runs  the recipe's spread: train a model once per seed, print each accuracy and the
#                   mean, min and max, and train the first seed again to compare (tools/training_runs.py)
#   make bench      benchmark the real server with wrk beside the bare stack's floor (tools/benchmark.py,
#                   tools/stack_floor.py); fails if a target is missed
#   make faults     the real server under faults: drain, neighbour, overload, kill, soak, and a raw-socket
#                   abuse corpus (tools/faults.py, tests/abuse.py);
#                   fails if a target is missed
#   make image-test build the CPU image with podman/buildah (no Docker engine needed), run it, check it
#                   (also read-only, as deploy/kubernetes runs it)
#   make manifests  render the Kubernetes and KServe manifests (deploy/) with kustomize, validate them
#                   against Kubernetes' schemas and the CRDs, scan them with checkov
#   make lint       ruff on the Python code, hadolint on both Dockerfiles
# Settings (environment or make VAR=...): HOST, PORT, WORKERS, MODEL_DIR, MNIST_DATA, EPOCHS, PYTHON;
# for training-runs MODEL (cnn or dense), SEEDS (1 2 3 4 5) and HOLDOUT (0: the training images held out).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The manifest tools (requirements/deploy.txt) in a venv of their own: checkov's pins conflict with
# the test tools'. tests/deploy/ and the image test render the manifests with its kubectl.
DEPLOY_VENV := .venv-deploy
DEPLOY_INSTALLED := $(DEPLOY_VENV)/.installed
# A model is trained when its served flatbuffer is missing (a model trained before training wrote
# them is trained again); training writes the .keras file, the flatbuffers and the metadata.
MODELS := var/data/mnist-cnn.int8.tflite var/data/mnist-dense.int8.tflite
EPOCHS ?=
export HOST ?= 127.0.0.1
export PORT ?= 5000

.PHONY: serve test test-fast system-packages model retrain samples uploads training-runs bench faults image-test manifests lint clean

$(INSTALLED): requirements.txt $(filter-out requirements/deploy.txt,$(wildcard requirements/*.txt))
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 10) else f"Python 3.11 is needed, {sys.executable} is {v[0]}.{v[1]}")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

$(DEPLOY_INSTALLED): requirements/deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r requirements/deploy.txt
	touch $@

var/data/mnist-%.int8.tflite: | $(INSTALLED)
	$(BIN)/python train_mnist.py --model $* $(if $(EPOCHS),--epochs $(EPOCHS)) --out var/data/mnist-$*.keras

model: $(MODELS)

retrain: | $(INSTALLED)
	$(BIN)/python train_mnist.py --model cnn $(if $(EPOCHS),--epochs $(EPOCHS))
	$(BIN)/python train_mnist.py --model dense $(if $(EPOCHS),--epochs $(EPOCHS))

serve: $(INSTALLED) $(MODELS)
	$(BIN)/gunicorn -c gunicorn.conf.py server:app

# Chromium and fonts from Debian: installed when root on Debian/Ubuntu, else the command to run.
system-packages:
	@sh tools/system_packages.sh

test: system-packages $(INSTALLED) $(DEPLOY_INSTALLED) $(MODELS)
	$(BIN)/python -m pytest

test-fast: system-packages $(INSTALLED) $(DEPLOY_INSTALLED)
	$(BIN)/python -m pytest -m "not accuracy"

samples: $(INSTALLED)
	$(BIN)/python -m tools.make_samples

uploads: $(INSTALLED) $(MODELS)
	$(BIN)/python -m tools.realistic_uploads

MODEL ?= cnn
SEEDS ?= 1 2 3 4 5
HOLDOUT ?= 0
training-runs: $(INSTALLED)
	$(BIN)/python -m tools.training_runs --model $(MODEL) --seeds $(SEEDS) --holdout $(HOLDOUT) --repeat

bench: $(INSTALLED) $(MODELS)
	$(BIN)/python -m tools.benchmark

faults: $(INSTALLED) $(MODELS)
	$(BIN)/python -m tools.faults

image-test: $(INSTALLED) $(DEPLOY_INSTALLED)
	$(BIN)/python -m tools.image_test

manifests: $(DEPLOY_INSTALLED)
	$(DEPLOY_VENV)/bin/python -m deploy.check

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile docker/gpu/Dockerfile

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
