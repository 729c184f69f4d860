"""connexion's per-operation work done once per operation instead of once per request.

connexion 3.3 rebuilds, on every request, what depends only on the operation of the spec: the
app's decorator chain around the handler (a new decorator object, its URI parser, and an
``inspect.signature`` of the handler), and in request validation a URI parser, a parameter
validator and the media types the operation accepts. None of it holds anything of the request.
The subclasses here build each once, on an operation's first request; and the Swagger UI
middleware, which routes every request through its own router, sees only the requests for its
paths. :func:`middlewares` and :func:`install` put them in place of connexion's in an app. What
is validated and how, and what the handler is given, are connexion's own; versions are pinned
(requirements/serve.txt), and tests/unit/test_operations.py checks the seam.
"""

from __future__ import annotations

import functools

import connexion
from connexion import utils
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import receive, scope
from connexion.datastructures import MediaTypeDict
from connexion.decorators import StarletteDecorator
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.swagger_ui import SwaggerUIMiddleware


class OnceBuiltStarletteDecorator(StarletteDecorator):
    """connexion's decorator of an AsyncApp's handler, whose URI parser and decorated function are
    built on the operation's first request (they read the operation from connexion's context)."""

    def __call__(self, function):
        built = None

        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            nonlocal built
            if built is None:
                built = (self.uri_parser, self.decorate(function))
            uri_parser, decorated = built
            return await decorated(self.framework.get_request(uri_parser=uri_parser, scope=scope, receive=receive))

        return wrapper


class OnceBuiltAsyncOperation(AsyncOperation):
    """An AsyncApp's operation whose decorated handler is made once."""

    @functools.cached_property
    def fn(self):
        return OnceBuiltStarletteDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class OnceBuiltAsyncApi(AsyncApi):
    def make_operation(self, operation):
        return OnceBuiltAsyncOperation.from_operation(operation, pythonic_params=self.pythonic_params,
                                                      jsonifier=self.jsonifier)


class OnceBuiltRequestValidationOperation(RequestValidationOperation):
    """connexion's request validation (RequestValidationOperation.__call__, the same steps) whose
    URI parser, parameter validator and media types accepted are made once. The body validator stays per request: it
    carries the request's encoding and scope."""

    @functools.cached_property
    def _uri_parser(self):
        return self._operation._uri_parser_class(self._operation.parameters, self._operation.body_definition())

    @functools.cached_property
    def _parameter_validator(self):
        return self._validator_map["parameter"](
            self._operation.parameters, uri_parser=self._uri_parser, strict_validation=self.strict_validation,
            security_query_params=self.security_query_params)

    @functools.cached_property
    def _consumed(self) -> MediaTypeDict:
        return MediaTypeDict([(media_type.lower(), None) for media_type in self._operation.consumes])

    def validate_mime_type(self, mime_type: str) -> None:
        if self._operation.consumes and mime_type.lower() not in self._consumed:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {self._operation.consumes}")

    async def __call__(self, scope, receive, send):
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        schema = self._operation.body_schema(mime_type)
        body_validator = self._validator_map["body"].get(mime_type) if schema else None
        if body_validator is not None:
            validator = body_validator(
                schema=schema, required=self._operation.request_body.get("required", False),
                nullable=utils.is_nullable(self._operation.body_definition(mime_type)), encoding=encoding,
                strict_validation=self.strict_validation, uri_parser=self._uri_parser)
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


class OnceBuiltRequestValidationAPI(RequestValidationAPI):
    def make_operation(self, operation):
        return OnceBuiltRequestValidationOperation(self.next_app, operation=operation,
                                                   strict_validation=self.strict_validation,
                                                   validator_map=self.validator_map)


class OnceBuiltRequestValidationMiddleware(RequestValidationMiddleware):
    api_cls = OnceBuiltRequestValidationAPI


class SwaggerUIOnItsPaths(SwaggerUIMiddleware):
    """connexion's Swagger UI middleware, which routes every request through a router of its own
    (a mount and its routes matched in turn) to find its few routes; here only requests for their
    paths (the spec's JSON and YAML, the UI) go through it, and the others straight on."""

    _prefixes: tuple[str, ...] = ()

    def add_api(self, *args, **kwargs) -> None:
        super().add_api(*args, **kwargs)
        mount = self.router.routes[-1]
        self._prefixes += tuple(mount.path + route.path.split("{")[0] for route in mount.routes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(self._prefixes):
            return await self.app(scope, receive, send)
        await super().__call__(scope, receive, send)


ONCE_BUILT = {RequestValidationMiddleware: OnceBuiltRequestValidationMiddleware,
              SwaggerUIMiddleware: SwaggerUIOnItsPaths}


def middlewares() -> list:
    """connexion's default middlewares, with the variants above in place of theirs."""
    return [ONCE_BUILT.get(middleware, middleware) for middleware in ConnexionMiddleware.default_middlewares]


def install(app: connexion.AsyncApp) -> None:
    """Make ``app`` (made with :func:`middlewares`) build its handlers' decorators once; call it
    before ``add_api``."""
    app._middleware_app.api_cls = OnceBuiltAsyncApi
