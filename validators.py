"""connexion's request validators, each JSON-schema validator built once instead of per request.

connexion 3.3 builds a new jsonschema validator (and deep-copies the parameter's spec) for every
query parameter and every form body of every request: about a tenth of the event loop's time on
/mnist/classify. These subclasses, passed to the app as its ``validator_map``, keep one validator
per schema of the spec. What they accept and the problems they answer with are connexion's own.
"""

from __future__ import annotations

from jsonschema import Draft4Validator, ValidationError
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_null, is_nullable
from connexion.datastructures import MediaTypeDict
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators import MultiPartFormDataValidator, ParameterValidator

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


class OnceBuiltMultiPartValidator(MultiPartFormDataValidator):
    """connexion's multipart/form-data body validator with one schema validator per body schema."""

    @property
    def _validator(self):
        return validator_for(self._schema, Draft4RequestValidator)


# connexion merges this into its own map key by key, so "body" lists every media type it validates.
VALIDATOR_MAP = {
    "parameter": OnceBuiltParameterValidator,
    "body": MediaTypeDict({**CONNEXION_VALIDATORS["body"], "multipart/form-data": OnceBuiltMultiPartValidator}),
}
