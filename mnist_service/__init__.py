"""The MNIST digit service's internals; ``server.py``, ``mnist.py`` and ``train_mnist.py`` at the
top of the repository are its entry points.

Where a change goes:

Serving, in the order a request meets it
    settings      every server setting, read once from the environment, typed and checked
    worker        the gunicorn worker: uvicorn's, with the drain on SIGTERM, a headers deadline and
                  size limit, and each answer in one write
    lifecycle     serving, then draining: what readiness and the worker ask
    admission     the door: MAX_IN_FLIGHT requests run, the next wait in line, the rest are shed
    middleware    request ids, the JSON access log, request metrics; each request's limits of
                  size and time (upload bytes, body time, processing deadline)
    operations    connexion's per-operation work (handler decorators, parameter validation) built
                  once, and Swagger UI's router only for its own paths
    validators    connexion's request validation, each schema validator built once, multipart
                  bodies parsed once, streamed (chunked) bodies accepted
    registry      the models of the model folder in each worker, loaded in the background
    batching      the micro-batcher every inference route goes through
    classifier    a loaded model: a request's pixel budget, its heavy lane for large images, the
                  queue's shedding, and a batch of uploads or tensors classified in one model call
    engines       LiteRT (int8 or float32 weights) and TensorFlow
    normalise     any uploaded image -> 28x28 pixels framed as MNIST's
    clutter       the digit found among clutter (paper lines, form boxes, specks, stray marks), or
                  the image found to hold no single digit
    answers       the JSON answers of the upload routes and of /models
    tf_serving    TensorFlow Serving's REST request and response bodies
    open_inference  the Open Inference Protocol's (KServe v2, Triton) REST bodies and metadata, its
                  binary tensor data extension included
    errors        the service's errors with their HTTP status and title; the problem JSON
    metrics       the Prometheus metrics
    jsonifier     JSON answers written by orjson

Shared by serving and training
    model_input   the one definition of the model input (shape, scale, polarity, framing)
    artifacts     a model file with its metadata and checksum: written by training, read by serving

Training
    mnist_data    reading and checking the MNIST IDX files
    training      the model recipes and training

The HTTP routes themselves are ``models.yaml`` (the spec) and ``mnist.py`` (their handlers).
"""
