# The MNIST digit service, CPU image: trains the models during the build, bakes them in, serves them
# with gunicorn.   docker build -t mnist-server . && docker run -p 5000:5000 mnist-server
# Both models are trained and baked in: the CNN (the default) and the book's dense network. The
# final stage holds only what serving needs (requirements/serve.txt): no TensorFlow, which only the
# training stage installs; the server runs the LiteRT flatbuffers training wrote.
# Build arguments: BASE_IMAGE (any Debian-like image with python3 and its venv module), EPOCHS
# (training epochs of both models, default train_mnist.py's; fewer for a quick build),
# MIN_ACCURACY and DENSE_MIN_ACCURACY (the build fails when the CNN or the dense model tests
# below these). MNIST is read from var/data/mnist/ in the build context when present (copy the four
# IDX .gz files there on an offline build host), else downloaded.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Python, the pinned serving dependencies in /opt/venv and nothing else: a code change does not
# reinstall them, and pip keeps no cache.
FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements/serve.txt requirements/
RUN python3 -m venv /opt/venv && pip install -r requirements/serve.txt

# Training: TensorFlow and the data stay in this stage; only the code and the trained models move on.
FROM runtime AS train
COPY requirements/train.txt requirements/
RUN pip install -r requirements/train.txt
COPY . .
ARG EPOCHS=""
ARG MIN_ACCURACY=0.994
ARG DENSE_MIN_ACCURACY=0.978
RUN python train_mnist.py --model cnn ${EPOCHS:+--epochs "$EPOCHS"} --min-accuracy "${MIN_ACCURACY}" \
    && python train_mnist.py --model dense ${EPOCHS:+--epochs "$EPOCHS"} --min-accuracy "${DENSE_MIN_ACCURACY}" \
    && rm -rf var/data/mnist

FROM runtime
COPY --from=train /app /app
RUN groupadd --system --gid 10001 mnist \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin mnist
USER 10001:10001
ENV HOST=0.0.0.0 \
    PORT=5000 \
    WORKERS=2
EXPOSE 5000
# Ready once the answering worker's model is loaded and warm (503 before that).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/health/ready\", timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "server:app"]
