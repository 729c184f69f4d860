"""The once-built validators answer exactly as connexion's own, and build one validator per schema."""

import pytest
from connexion.validators import MultiPartFormDataValidator, ParameterValidator
from jsonschema import ValidationError

from mnist_service import validators

PARAMETERS = [
    {"name": "model", "in": "query", "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "required": True, "schema": {"type": "integer", "maximum": 10}},
    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["cnn", "dense"]}},
    {"name": "note", "in": "query", "schema": {"type": "string", "nullable": True}},
]
VALUES = [None, "mnist-cnn", 3, 11, "x", "cnn", "dense", "null"]


@pytest.mark.parametrize("param", PARAMETERS, ids=lambda p: p["name"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_parameter_answers_are_connexions(param, value):
    expected = ParameterValidator.validate_parameter("query", value, param)
    assert validators.OnceBuiltParameterValidator.validate_parameter("query", value, param) == expected


def test_one_validator_per_schema():
    first, second = {"type": "integer"}, {"type": "integer"}
    built = validators.validator_for(first, validators.Draft4Validator)
    assert validators.validator_for(first, validators.Draft4Validator) is built
    assert validators.validator_for(second, validators.Draft4Validator) is not built


@pytest.mark.parametrize("items", [{"type": "string"}, {"type": "string", "format": "binary"}])
def test_form_validator_rejects_what_connexions_rejects(items):
    """Also for an array of files, whose item schema ours leaves out (connexion puts "" for each file)."""
    schema = {"type": "object", "required": ["files"],
              "properties": {"files": {"type": "array", "minItems": 1, "maxItems": 2, "items": items}}}
    ours = validators.OnceBuiltMultiPartValidator(schema=schema, encoding="utf-8", strict_validation=False)
    theirs = MultiPartFormDataValidator(schema=schema, encoding="utf-8", strict_validation=False)
    for body in ({"files": ["", ""]}, {"files": ["", "", ""]}, {"files": []}, {"files": ""}, {}):
        outcomes = []
        for validator in (ours, theirs):
            try:
                validator._validator.validate(body)
                outcomes.append(None)
            except ValidationError as error:
                outcomes.append(error.message)
        assert outcomes[0] == outcomes[1]
    assert ours._validator is ours._validator


SPEC = """
openapi: 3.0.3
info: {title: hand-over, version: "1"}
paths:
  /upload:
    post:
      operationId: tests.unit.test_validators.upload
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema:
              type: object
              required: [file]
              properties:
                file: {type: string, format: binary}
      responses:
        "200": {description: the upload's name and size}
"""


async def upload(file):
    return {"name": file.filename, "size": len(await file.read())}


def test_the_handler_gets_the_form_the_validator_parsed(tmp_path, monkeypatch):
    import connexion
    from starlette import formparsers

    (tmp_path / "spec.yaml").write_text(SPEC)
    parses = []

    def counting(parser_class):
        parse = parser_class.parse

        async def counted(self):
            parses.append(type(self).__name__)
            return await parse(self)

        monkeypatch.setattr(parser_class, "parse", counted)

    counting(formparsers.MultiPartParser)
    counting(validators.MultipartFormParser)
    app = connexion.AsyncApp(__name__, specification_dir=tmp_path)
    app.add_api("spec.yaml", validator_map=validators.VALIDATOR_MAP)
    client = app.test_client()

    response = client.post("/upload", files={"file": ("d.png", b"x" * 300, "image/png")})
    assert response.status_code == 200 and response.json() == {"name": "d.png", "size": 300}
    assert parses == ["MultipartFormParser"]  # once, by the validator; the handler reused it

    parses.clear()
    response = client.post("/upload", files={"other": ("d.png", b"x", "image/png")})
    assert response.status_code == 400 and "'file' is a required property" in response.json()["detail"]
    assert parses == ["MultipartFormParser"]


def parse_both(body: bytes, content_type: str):
    """The form starlette's own parser makes of a body, and the one MultipartFormParser makes."""
    import asyncio

    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartParser

    async def stream():
        for start in range(0, len(body), 1000):  # in chunks, as a server receives it
            yield body[start : start + 1000]
        yield b""

    def plain(form):
        return [(name, (value.filename, value.content_type, value.size, value.file.read())
                 if isinstance(value, UploadFile) else value) for name, value in form.multi_items()]

    headers = Headers({"content-type": content_type})
    theirs = asyncio.run(MultiPartParser(headers, stream()).parse())
    ours = asyncio.run(validators.MultipartFormParser(headers, stream(), scope={}).parse())
    return plain(theirs), plain(ours)


def test_the_form_parser_makes_the_form_starlettes_parser_makes():
    import httpx

    request = httpx.Request("POST", "http://test/", data={"model": "mnist-dense", "note": "dé"}, files=[
        ("files", ("a.png", b"\x89PNG" + bytes(range(256)) * 20, "image/png")),
        ("files", ("b c.jpg", b"\r\n--not-the-boundary\r\n", "image/jpeg")),
        ("files", ("empty.png", b"", "image/png")),
        ("file", ("no-type", b"x")),
        ("files", ("数字 7.png", b"\x89PNG", "image/png")),
    ])
    body = request.read()
    theirs, ours = parse_both(body, request.headers["content-type"])
    assert ours == theirs
    assert [name for name, _ in ours] == ["model", "note", "files", "files", "files", "file", "files"]
    assert ours[-1][1][0] == "数字 7.png"
    assert ours[1] == ("note", "dé") and ours[3][1][:3] == ("b c.jpg", "image/jpeg", 22)


def test_a_text_field_in_an_unknown_charset_is_read_as_utf8():
    body = (b'--XX\r\nContent-Disposition: form-data; name="note"\r\nContent-Type: text/plain; charset=klingon\r\n'
            b"\r\nd\xc3\xa9\r\n--XX--\r\n")
    _, ours = parse_both(body, "multipart/form-data; boundary=XX")
    assert ours == [("note", "dé")]


def test_the_form_parser_refuses_a_malformed_body_with_400():
    import asyncio

    from connexion.exceptions import BadRequestProblem
    from starlette.datastructures import Headers

    for body, content_type, says in [
        (b"--XX\r\n", "multipart/form-data", "no boundary"),
        (b"not multipart at all", "multipart/form-data; boundary=XX", "malformed"),
        (b'--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\nabc', "multipart/form-data; boundary=XX",
         "malformed"),
    ]:
        async def stream(body=body):
            yield body
            yield b""

        parser = validators.MultipartFormParser(Headers({"content-type": content_type}), stream(), scope={})
        with pytest.raises(BadRequestProblem, match=says):
            asyncio.run(parser.parse())
