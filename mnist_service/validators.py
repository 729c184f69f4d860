"""connexion's request validation without its repeated work, and multipart bodies parsed once, fast,
and with a 400 for a malformed one.

connexion 3.3, on every request, builds a new jsonschema validator (and deep-copies the
parameter's spec) for each query parameter and form body, and parses a multipart body twice: once
to validate it, once more for the handler's arguments. The subclasses here, passed to the app as
its ``validator_map``, keep one validator per schema of the spec, and the multipart validator
leaves the form it parsed in the request's scope, where the handler's request picks it up instead
of parsing the body again (:func:`reuse_validated_forms`, applied at import).

The form is parsed by the ``multipart`` library's PushMultipartParser (:class:`MultipartFormParser`)
into the same starlette FormData of UploadFile and str that starlette's own parser makes, at about
a quarter of its cost a part (starlette's runs python-multipart's byte-at-a-time header loop in
Python). Bodies that starlette's parser raised on and connexion answered with 500 (no boundary, a
part without a name, bytes that are not multipart) are 400 problems here, as is a text field sent
where the spec wants a file, and a JSON body that is not UTF-8 text or is nested too deeply
(connexion's decode and parse errors were a 500; :class:`TextJSONRequestBodyValidator`); a JSON
body with the Open Inference Protocol's binary tensor data after it is a 415 that says how to send
it. A body streamed without a Content-Length (chunked), which connexion refused as missing, is
validated like any other (:class:`StreamedBodies`). What is accepted otherwise and the problems
answered are connexion's own; versions are pinned
in requirements.txt, and tests/unit/test_validators.py checks the hand-over.
"""

from __future__ import annotations

import functools
import io

import multipart
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators import JSONRequestBodyValidator, MultiPartFormDataValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import FormData, Headers, UploadFile

# The Open Inference Protocol's binary tensor data extension: the size of the body's JSON header.
BINARY_TENSOR_HEADER = "Inference-Header-Content-Length"
# Where the validator leaves the parsed form: the scope's extensions, shared by everything downstream.
PARSED_FORM = "mnist.parsed_form"

# id(schema) -> (schema, its validator). The spec's schemas live as long as the app, and the
# entry holds its schema, so an id is never reused while its entry stands.
_built: dict[int, tuple[dict, Draft4Validator]] = {}


def validator_for(schema: dict, kind: type[Draft4Validator], checked=lambda schema: schema) -> Draft4Validator:
    """The validator of ``kind`` for ``checked(schema)`` (``schema`` is an object of the spec),
    built on first use."""
    entry = _built.get(id(schema))
    if entry is None or entry[0] is not schema or not isinstance(entry[1], kind):
        entry = _built[id(schema)] = (schema, kind(checked(schema), format_checker=Draft4Validator.FORMAT_CHECKER))
    return entry[1]


class OnceBuiltParameterValidator(ParameterValidator):
    """connexion's ParameterValidator with one schema validator per parameter of the spec."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            try:
                validator_for(param.get("schema", param), Draft4Validator).validate(value)
            except ValidationError as exception:
                return str(exception)
        elif param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None


# The most parts one multipart body may have (starlette's parser allows 1,000 files and 1,000
# fields); the body itself is capped by MAX_UPLOAD_BYTES (middleware.BodySizeLimit).
MAX_PARTS = 1000


class MultipartFormParser:
    """A multipart/form-data body -> starlette's FormData: an UploadFile (in memory) for each part
    with a filename, the decoded text of each other part. A body that is not valid multipart, or
    has more than MAX_PARTS parts, is a 400 problem. The form is also left in ``scope``."""

    def __init__(self, headers: Headers, stream, *, scope: dict):
        self.headers = headers
        self.stream = stream
        self.scope = scope

    async def parse(self) -> FormData:
        _, options = multipart.parse_options_header(self.headers.get("content-type", ""))
        if not options.get("boundary"):
            raise BadRequestProblem(detail="the multipart/form-data body has no boundary (Content-Type)")
        items: list[tuple[str, UploadFile | str]] = []
        try:
            parser = multipart.PushMultipartParser(options["boundary"], max_segment_count=MAX_PARTS)
            async for chunk in self.stream:  # read to the end even after the closing boundary
                if chunk and not parser.closed:
                    for event in parser.parse(chunk):
                        if isinstance(event, multipart.MultipartSegment):
                            segment, data = event, []
                        elif event is None:
                            items.append((segment.name, _form_value(segment, b"".join(data))))
                        else:
                            data.append(event)
            parser.close()
        except multipart.ParserLimitReached as error:
            raise BadRequestProblem(detail=f"the multipart/form-data body is over a limit ({error}): at most "
                                           f"{MAX_PARTS} parts, each with at most 8 headers of 4 KB") from None
        except multipart.MultipartError as error:
            raise BadRequestProblem(detail=f"the multipart/form-data body is malformed: {error}") from None
        form = FormData(items)
        self.scope.setdefault("extensions", {})[PARSED_FORM] = form
        return form


def _form_value(segment: multipart.MultipartSegment, data: bytes) -> UploadFile | str:
    """A part's value: an UploadFile if it has a filename, else its text."""
    if segment.filename is None:
        try:
            return data.decode(segment.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return data.decode("utf-8", errors="replace")
    # Header values as the client sent them (UTF-8), as starlette's parser keeps them.
    headers = Headers(raw=[(name.lower().encode("latin-1"), value.encode("utf-8"))
                           for name, value in segment.headerlist])
    return UploadFile(io.BytesIO(data), size=len(data), filename=segment.filename, headers=headers)


def _is_file(schema: dict) -> bool:
    return schema.get("type") == "string" and schema.get("format") in ("binary", "base64")


def without_file_items(schema: dict) -> dict:
    """A form's schema without the item schema of its file arrays. connexion validates a
    placeholder "" in place of each file, which that schema always accepts, at 4 us an item;
    OnceBuiltMultiPartValidator has already checked that each is a file. The array's own checks
    (its type, minItems, maxItems) stay."""
    properties = {name: {key: value for key, value in field.items() if key != "items"}
                  if _is_file(field.get("items", {})) else field
                  for name, field in schema.get("properties", {}).items()}
    return {**schema, "properties": properties} if properties else schema


class StreamedBodies:
    """A body validator's mixin for bodies sent without a Content-Length (``Transfer-Encoding:
    chunked``, as clients stream uploads): connexion 3.3 takes a missing Content-Length for a
    missing body and refuses them with 400 "RequestBody is required". Its check is shown a length,
    the rest of its validation is its own, and the request goes on with its own headers."""

    async def wrap_receive(self, receive, *, scope):
        headers = Headers(scope=scope)
        if "content-length" in headers or "transfer-encoding" not in headers:
            return await super().wrap_receive(receive, scope=scope)
        shown = {**scope, "headers": [*scope["headers"], (b"content-length", b"1")]}
        receive, _ = await super().wrap_receive(receive, scope=shown)
        return receive, scope


class OnceBuiltMultiPartValidator(StreamedBodies, MultiPartFormDataValidator):
    """connexion's multipart/form-data body validator with one schema validator per body schema,
    which parses with MultipartFormParser, leaves the form for the handler (see the module's
    docstring) and refuses a text field where the spec wants a file."""

    async def _parse(self, stream, scope):
        self._scope = scope
        body = await super()._parse(stream, scope)
        form = scope["extensions"][PARSED_FORM]
        for name, schema in self._schema.get("properties", {}).items():
            if _is_file(schema) or _is_file(schema.get("items", {})):
                if not all(isinstance(value, UploadFile) for value in form.getlist(name)):
                    raise BadRequestProblem(detail=f"'{name}' must be a file: a part with a filename, "
                                                   f"as curl -F {name}=@FILE sends it")
        return body

    @property
    def _form_parser_cls(self):
        return functools.partial(MultipartFormParser, scope=self._scope)

    @property
    def _validator(self):
        return validator_for(self._schema, Draft4RequestValidator, without_file_items)


class TextJSONRequestBodyValidator(StreamedBodies, JSONRequestBodyValidator):
    """connexion's JSON body validator, with a 400 problem for a body that is not text in its
    encoding, or JSON nested deeper than the json module parses: connexion 3.3 decodes and parses
    it unguarded, and its UnicodeDecodeError or RecursionError was answered 500. A JSON body that
    says binary tensor data follows its JSON (the Open Inference Protocol's
    Inference-Header-Content-Length) is a 415 that says how to send it, rather than a JSON error."""

    async def _parse(self, stream, scope):
        if Headers(scope=scope).get(BINARY_TENSOR_HEADER) is not None:
            raise UnsupportedMediaTypeProblem(
                detail=f"a body with binary tensor data after its JSON ({BINARY_TENSOR_HEADER}) is sent as "
                       "application/octet-stream, or without a Content-Type; application/json is JSON only")
        body = b"".join([chunk async for chunk in stream])
        try:
            body.decode(self._encoding)
        except UnicodeDecodeError as error:
            raise BadRequestProblem(detail=f"the request body is not {self._encoding} text: {error.reason} "
                                           f"at byte {error.start}") from None

        async def replay():
            yield body

        try:
            return await super()._parse(replay(), scope)
        except RecursionError:
            raise BadRequestProblem(detail="the request body's JSON is nested too deeply to be read") from None


def reuse_validated_forms() -> None:
    """Make connexion's request (the one a handler's arguments come from) take the form the
    validator parsed, when there is one, instead of parsing the body again."""
    split_form_files = ConnexionRequest._split_form_files
    if getattr(split_form_files, "reuses_validated_form", False):
        return

    @functools.wraps(split_form_files)
    async def split_validated_form(self):
        form = self.scope.get("extensions", {}).get(PARSED_FORM)
        if form is not None:
            self._starlette_request._form = form  # what starlette's Request.form() returns when set
        return await split_form_files(self)

    split_validated_form.reuses_validated_form = True
    ConnexionRequest._split_form_files = split_validated_form


reuse_validated_forms()


# connexion merges this into its own map key by key, so "body" lists every media type it validates.
VALIDATOR_MAP = {
    "parameter": OnceBuiltParameterValidator,
    "body": MediaTypeDict({**CONNEXION_VALIDATORS["body"], "*/*json": TextJSONRequestBodyValidator,
                           "multipart/form-data": OnceBuiltMultiPartValidator}),
}
