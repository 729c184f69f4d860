"""connexion's request validation without its repeated work: schemas compiled once, forms parsed once.

connexion 3.3, on every request, builds a new jsonschema validator (and deep-copies the
parameter's spec) for each query parameter and form body, and parses a multipart body twice: once
to validate it, once more for the handler's arguments. On /mnist/classify that was about a fifth of
the event loop's time. The subclasses here, passed to the app as its ``validator_map``, keep one
validator per schema of the spec, and the multipart validator leaves the form it parsed (starlette's
parser, as before) in the request's scope, where the handler's request picks it up instead of
parsing the body again (:func:`reuse_validated_forms`, applied at import). What is accepted and the
problems answered are connexion's own; versions are pinned in requirements.txt, and
tests/test_validators.py checks the hand-over.
"""

from __future__ import annotations

import functools

from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators import MultiPartFormDataValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.formparsers import MultiPartParser

# Where the validator leaves the parsed form: the scope's extensions, shared by everything downstream.
PARSED_FORM = "mnist.parsed_form"

# id(schema) -> (schema, its validator). The spec's schemas live as long as the app, and the
# entry holds its schema, so an id is never reused while its entry stands.
_built: dict[int, tuple[dict, Draft4Validator]] = {}


def validator_for(schema: dict, kind: type[Draft4Validator]) -> Draft4Validator:
    """The validator of ``kind`` for ``schema`` (an object of the spec), built on first use."""
    entry = _built.get(id(schema))
    if entry is None or entry[0] is not schema or not isinstance(entry[1], kind):
        entry = _built[id(schema)] = (schema, kind(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
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


class FormKeepingParser(MultiPartParser):
    """starlette's multipart parser, which also leaves the form it parsed in ``scope``."""

    def __init__(self, headers, stream, *, scope: dict):
        super().__init__(headers, stream)
        self.scope = scope

    async def parse(self):
        form = await super().parse()
        self.scope.setdefault("extensions", {})[PARSED_FORM] = form
        return form


class OnceBuiltMultiPartValidator(MultiPartFormDataValidator):
    """connexion's multipart/form-data body validator with one schema validator per body schema,
    which leaves the parsed form for the handler (see the module's docstring)."""

    async def _parse(self, stream, scope):
        self._scope = scope
        return await super()._parse(stream, scope)

    @property
    def _form_parser_cls(self):
        return functools.partial(FormKeepingParser, scope=self._scope)

    @property
    def _validator(self):
        return validator_for(self._schema, Draft4RequestValidator)


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
    "body": MediaTypeDict({**CONNEXION_VALIDATORS["body"], "multipart/form-data": OnceBuiltMultiPartValidator}),
}
