"""connexion's per-operation work built once (mnist_service.operations): the app really uses the
once-built classes, and validation still answers each request on its own."""

from mnist_service import operations
from mnist_service.settings import Settings
from server import create_app


def test_the_app_builds_each_operations_handler_and_validator_once(tmp_path):
    app = create_app(Settings(model_dir=tmp_path))
    middlewares = app.middleware.middlewares
    assert operations.OnceBuiltRequestValidationMiddleware in middlewares
    assert app._middleware_app.api_cls is operations.OnceBuiltAsyncApi
    client = app.test_client()  # no lifespan: no model is loaded, and validation needs none
    for _ in range(2):
        assert client.post("/mnist/classify", files={"other": ("a.png", b"x")}).status_code == 400
    (api,) = app._middleware_app.apis[""]  # connexion builds its APIs on the first request
    classify = api.operations["mnist.classify"]
    assert isinstance(classify, operations.OnceBuiltAsyncOperation) and classify.fn is classify.fn


def test_validation_answers_each_request_on_its_own(tmp_path):
    """A bad query after a good one and a good one after a bad one: nothing of one request stays
    in the validators that are now shared."""
    app = create_app(Settings(model_dir=tmp_path))
    client = app.test_client()
    for _ in range(2):
        bad = client.post("/mnist/classify?show_input=maybe", files={"file": ("a.png", b"x")})
        assert bad.status_code == 400 and "maybe" in bad.json()["detail"]
        missing = client.post("/mnist/classify?show_input=true", files={"other": ("a.png", b"x")})
        assert missing.status_code == 400 and "'file'" in missing.json()["detail"]
        batch = client.post("/mnist/classify/batch", files=[("files", ("a.png", b"x"))] * 65)
        assert batch.status_code == 400, batch.text


def test_swagger_ui_and_the_spec_are_served_and_other_paths_pass_it_by(tmp_path):
    app = create_app(Settings(model_dir=tmp_path))
    client = app.test_client()
    assert client.get("/openapi.json").json()["info"]["title"]
    assert "swagger-ui" in client.get("/ui/").text
    assert client.get("/ui/swagger-ui.css").status_code == 200
    assert client.get("/ui", follow_redirects=False).status_code == 307
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/no/such/route").status_code == 404


def test_a_media_type_the_operation_does_not_take_is_refused_each_time(tmp_path):
    client = create_app(Settings(model_dir=tmp_path)).test_client()
    for _ in range(2):
        refused = client.post("/mnist/classify", content=b"{}", headers={"Content-Type": "application/json"})
        assert refused.status_code == 415 and "multipart/form-data" in refused.json()["detail"]
