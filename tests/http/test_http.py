"""The service over real HTTP: gunicorn with two uvicorn workers serving a small trained model."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_service import model_input, normalise
from mnist_service.classifier import Classifier
from mnist_service.settings import Settings
from tests.helpers import assert_problem, classify, classify_batch
from tools import realistic_uploads
from tools.make_samples import sample_indices
from tools.realistic_uploads import encode


def test_every_sample_is_classified_as_its_digit(server, samples):
    for digit, path in samples.items():
        response = classify(server, path.read_bytes())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        answer = response.json()
        assert isinstance(answer, dict), "the answer is a JSON object, not a JSON-encoded string"
        assert answer["digit"] == digit, (path.name, answer)
        assert len(answer["probabilities"]) == 10
        assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert answer["confidence"] == max(answer["probabilities"])
        assert answer["uncertain"] is (answer["confidence"] < 0.8)
        assert answer["model"] == "mnist-cnn" and answer["model_version"]


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-dense"])
def test_served_probabilities_are_the_models_on_the_training_input(server, small_models, name, mnist, samples):
    """Serving feeds each model exactly what training fed it (scale 0-1, white on black), and
    ``?model=`` picks the model that answers.

    The server's engine (int8 weights by default) given the training input in-process answers
    exactly what is served, and the Keras model itself nearly so (same digit; the int8 weights
    move probabilities by a few hundredths at most). Served 0-255 bytes, or inverted or transposed
    pixels, or by the other model, the probabilities would differ.
    """
    import keras

    model = keras.saving.load_model(small_models / f"{name}.keras", compile=False)
    engine = Classifier.load(small_models / f"{name}.keras", settings=Settings())
    indices = sample_indices(mnist.x_test, mnist.y_test)
    for digit, path in samples.items():
        trained_on = model_input.to_model_input(normalise.normalise_stack(mnist.x_test[[indices[digit]]]))
        answer = classify(server, path.read_bytes(), model=name).json()
        assert answer["model"] == name
        np.testing.assert_allclose(answer["probabilities"], engine.predict_inputs(trained_on)[0], atol=1e-6)
        keras_says = model.predict(trained_on, verbose=0)[0]
        np.testing.assert_allclose(answer["probabilities"], keras_says, atol=0.05)
        assert answer["digit"] == int(np.argmax(keras_says))


def test_the_two_models_answer_side_by_side_and_an_unknown_model_is_404(server, samples):
    image = samples[4].read_bytes()
    default, cnn, dense = (classify(server, image, **params).json()
                           for params in ({}, {"model": "mnist-cnn"}, {"model": "mnist-dense"}))
    assert default == cnn and default["model"] == "mnist-cnn"
    assert dense["model"] == "mnist-dense" and dense["probabilities"] != cnn["probabilities"]
    batch = classify_batch(server, [("a.png", image), ("b.png", image)], model="mnist-dense").json()
    assert batch["model"] == "mnist-dense"
    for result in batch["results"]:  # the dense model's answer, whatever the batch size
        np.testing.assert_allclose(result["probabilities"], dense["probabilities"], atol=1e-6)
    unknown = classify(server, image, model="resnet-50")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["title"] == "No such model" and "/models" in unknown.json()["detail"]


def test_an_image_of_another_size_and_format_is_classified(server, samples):
    """A 3x larger RGB JPEG of a sample is scaled down to the model's 28x28 and still classifies."""
    big = Image.open(samples[7]).convert("RGB").resize((84, 84), Image.Resampling.BICUBIC)
    answer = classify(server, encode(big, "JPEG", quality=95), "seven.jpg").json()
    assert answer["digit"] == 7, answer


@pytest.mark.parametrize("style", [*realistic_uploads.STYLES, "printed-font"])
def test_what_people_really_upload_is_classified(server, samples, style):
    """Each sample digit drawn as people send it: a paper scan, a transparent canvas, a small digit
    on a page, a coloured phone photo (sideways with an EXIF tag half of the time), a digit among
    clutter (ruled or squared paper, a form box, comb boxes, specks, a stray mark, a shadow); and
    printed digits in system fonts. At most one of the ten may be wrong (the test model is a small one),
    two for printed digits, which look least like the handwriting it was trained on."""
    rng = np.random.default_rng(5)
    fonts = realistic_uploads.system_fonts()
    right = []
    for digit, path in samples.items():
        if style == "printed-font":
            data = realistic_uploads.printed_font(digit, fonts[digit % len(fonts)], rng)
        else:
            data = realistic_uploads.STYLES[style](np.asarray(Image.open(path)), rng)
        response = classify(server, data)
        assert response.status_code == 200, response.text
        right.append(response.json()["digit"] == digit)
    least_right = 8 if style == "printed-font" else 9
    assert sum(right) >= least_right, f"{style}: right for {[d for d, ok in enumerate(right) if ok]} only"


def test_a_blank_image_gets_422_and_the_server_keeps_serving(server, samples):
    blank = encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0)))  # an empty canvas
    assert_problem(classify(server, blank), 422, "no digit found")
    assert classify(server, samples[1].read_bytes()).json()["digit"] == 1


def test_an_image_with_no_single_digit_gets_422_and_the_server_keeps_serving(server, samples):
    """Two digits side by side, and a ruled page with nothing written on it."""
    two = Image.new("L", (200, 100), 0)
    two.paste(Image.open(samples[3]).resize((84, 84)), (8, 8))
    two.paste(Image.open(samples[8]).resize((84, 84)), (108, 8))
    assert_problem(classify(server, encode(two)), 422, "several")
    ruled = Image.new("L", (300, 200), 240)
    for y in range(15, 200, 30):
        ImageDraw.Draw(ruled).line([(0, y), (300, y)], fill=170, width=2)
    assert_problem(classify(server, encode(ruled)), 422, "only lines or boxes")
    assert classify(server, samples[1].read_bytes()).json()["digit"] == 1


def test_swagger_ui_and_the_spec_are_served(server):
    ui = httpx.get(f"{server.url}/ui/", timeout=10)
    assert ui.status_code == 200 and "swagger-ui" in ui.text
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert spec["paths"]["/mnist/classify"]["post"]["operationId"] == "mnist.classify"


def test_bad_uploads_get_problem_json_and_the_server_keeps_serving(server, samples):
    png = samples[4].read_bytes()
    assert_problem(classify(server, b"hello, I am not an image", "note.txt"), 415, "not an image format")
    assert_problem(classify(server, b"", "empty.png"), 415, "empty")
    assert_problem(classify(server, png[: len(png) // 2]), 415, "truncated or corrupt")
    bomb = encode(Image.new("1", (5000, 5000)))  # a few KB, 25 megapixels
    assert_problem(classify(server, bomb), 413, "over the limit of 16000000")
    assert_problem(classify(server, png, field="image"), 400, "'file' is a required property")
    wrong_type = httpx.post(f"{server.url}/mnist/classify", json={"file": "x"}, timeout=10)
    assert wrong_type.status_code == 415 and wrong_type.headers["content-type"] == "application/problem+json"

    after = classify(server, png)
    assert after.status_code == 200 and after.json()["digit"] == 4


def post_multipart(server, body: bytes, boundary: str | None = "XX") -> httpx.Response:
    content_type = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return httpx.post(f"{server.url}/mnist/classify", content=body, headers={"Content-Type": content_type},
                      timeout=10)


def test_a_malformed_multipart_body_gets_400_and_the_server_keeps_serving(server, samples):
    """Bodies a broken client sends: each is a 400 problem that says what is wrong, never a 500."""
    png = samples[4].read_bytes()
    part = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n\r\n' + png
    assert_problem(post_multipart(server, part + b"\r\n--XX--\r\n", boundary=None), 400, "no boundary")
    assert_problem(post_multipart(server, b"these bytes are not multipart"), 400, "malformed")
    assert_problem(post_multipart(server, part), 400, "malformed")  # cut off before its closing boundary
    assert_problem(post_multipart(server, b"--XX\r\nno header here\r\n\r\nabc\r\n--XX--\r\n"), 400, "malformed")
    many = b'--XX\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * 1001 + b"--XX--\r\n"
    assert_problem(post_multipart(server, many), 400, "at most 1000 parts")
    # A text field where the spec wants a file (curl -F file=hello instead of file=@hello.png).
    assert_problem(httpx.post(f"{server.url}/mnist/classify", data={"file": "hello"}, files={"x": b""}, timeout=10),
                   400, "'file' must be a file")
    assert_problem(httpx.post(f"{server.url}/mnist/classify/batch", data={"files": "hello"},
                              files=[("files", ("d.png", png))], timeout=10), 400, "'files' must be a file")

    after = post_multipart(server, part + b"\r\n--XX--\r\n")
    assert after.status_code == 200 and after.json()["digit"] == 4


def test_concurrent_requests_each_get_their_own_answer(server, samples):
    """64 requests at once over 32 connections, batched together inside the workers: every answer
    belongs to its own image (no cross-talk), and none fails."""
    import asyncio

    order = [digit for _ in range(6) for digit in samples][:64]

    async def send_all():
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            async def one(digit):
                response = await client.post("/mnist/classify", files={"file": samples[digit].read_bytes()})
                return response.status_code, response.json()
            return await asyncio.gather(*(one(digit) for digit in order))

    answers = asyncio.run(send_all())
    assert [status for status, _ in answers] == [200] * len(order)
    reference = {digit: classify(server, path.read_bytes()).json()["probabilities"] for digit, path in samples.items()}
    for digit, (_, answer) in zip(order, answers):
        assert answer["digit"] == digit
        np.testing.assert_allclose(answer["probabilities"], reference[digit], atol=1e-5)


def test_the_batch_route_answers_each_image_in_order(server, samples):
    order = [7, 0, 3, 3, 9, 1, 4, 8, 2, 6, 5]
    response = classify_batch(server, [(f"d{digit}.png", samples[digit].read_bytes()) for digit in order])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [result["digit"] for result in body["results"]] == order
    assert [result["filename"] for result in body["results"]] == [f"d{digit}.png" for digit in order]
    assert body["model"] == "mnist-cnn" and all(len(r["probabilities"]) == 10 for r in body["results"])


def test_a_bad_image_in_a_batch_gets_its_own_error(server, samples):
    parts = [("three.png", samples[3].read_bytes()), ("notes.txt", b"not an image"),
             ("blank.png", encode(Image.new("L", (64, 64), 255))), ("five.png", samples[5].read_bytes())]
    results = classify_batch(server, parts).json()["results"]
    assert [r["filename"] for r in results] == ["three.png", "notes.txt", "blank.png", "five.png"]
    assert results[0]["digit"] == 3 and results[3]["digit"] == 5
    assert results[1]["error"]["status"] == 415 and "not an image format" in results[1]["error"]["detail"]
    assert results[2]["error"]["status"] == 422 and "digit" not in results[2]


def test_the_batch_route_refuses_more_files_than_its_maximum(server, samples):
    response = classify_batch(server, [("d.png", samples[1].read_bytes())] * 65)
    assert_problem(response, 400, "is too long")
    wrong_field = httpx.post(f"{server.url}/mnist/classify/batch", files={"file": samples[1].read_bytes()}, timeout=10)
    assert_problem(wrong_field, 400, "'files' is a required property")


def shown_pixels(answer: dict) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(answer["input"]["png"])))
    assert image.format == "PNG" and image.mode == "L" and image.size == (28, 28)
    return np.asarray(image)


@pytest.mark.parametrize("side", [200, 1100])  # 1100: a large image, normalised in the heavy lane
def test_show_input_answers_what_the_model_was_given_and_where_the_digit_was_found(server, small_model,
                                                                                  samples, side):
    """A dark digit on a white page, at a known place: the answer's PNG is the 28x28 image the
    model classified (the same probabilities in-process), and its box is where the digit's ink is."""
    digit = 255 - np.asarray(Image.open(samples[2]).resize((side // 4, side // 4), Image.Resampling.BICUBIC))
    page = np.full((side, side), 255, np.uint8)
    top, left = side // 5, side // 2
    page[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    data = encode(Image.fromarray(page))
    answer = classify(server, data, show_input="true").json()
    assert "input" not in classify(server, data).json()
    in_process = Classifier.load(small_model).predict(shown_pixels(answer)[None])[0]
    np.testing.assert_allclose(in_process, answer["probabilities"], atol=1e-6)
    rows, cols = np.nonzero(page < 128)
    expected = {"left": cols.min() / side, "top": rows.min() / side,
                "right": (cols.max() + 1) / side, "bottom": (rows.max() + 1) / side}
    for edge, share in expected.items():
        assert answer["input"]["box"][edge] == pytest.approx(share, abs=0.01), (edge, answer["input"])


def test_show_input_in_a_batch_is_given_for_each_image_read(server, samples):
    parts = [("three.png", samples[3].read_bytes()), ("notes.txt", b"not an image")]
    results = classify_batch(server, parts, show_input="true").json()["results"]
    np.testing.assert_array_equal(shown_pixels(results[0]), normalise.upload_to_pixels(samples[3].read_bytes()))
    assert "input" not in results[1] and results[1]["error"]["status"] == 415
    assert "input" not in classify_batch(server, parts[:1]).json()["results"][0]


def test_uploads_streamed_without_a_content_length_are_classified(server, samples):
    """A client that streams its upload (Transfer-Encoding: chunked, no Content-Length) is answered
    like any other, on the single, batch and TF Serving routes."""
    boundary = "streamed"

    def parts(field, images):
        for n, content in enumerate(images):
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{n}.png"\r\n'
                   "Content-Type: image/png\r\n\r\n").encode()
            yield content
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    one = httpx.post(f"{server.url}/mnist/classify", content=parts("file", [samples[3].read_bytes()]),
                     headers=headers, timeout=30)
    assert one.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in one.request.headers
    assert one.status_code == 200 and one.json()["digit"] == 3, one.text
    batch = httpx.post(f"{server.url}/mnist/classify/batch",
                       content=parts("files", [samples[n].read_bytes() for n in (5, 6)]), headers=headers, timeout=30)
    assert [result["digit"] for result in batch.json()["results"]] == [5, 6], batch.text
    pixels = normalise.upload_to_pixels(samples[2].read_bytes())
    body = json.dumps({"instances": [model_input.to_model_input(pixels[None])[0].tolist()]}).encode()
    predicted = httpx.post(f"{server.url}/v1/models/mnist-cnn:predict", content=iter([body[:100], body[100:]]),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert predicted.status_code == 200 and int(np.argmax(predicted.json()["predictions"][0])) == 2, predicted.text
    missing = httpx.post(f"{server.url}/mnist/classify", content=iter([b""]), headers=headers, timeout=30)
    assert missing.status_code == 400, missing.text
