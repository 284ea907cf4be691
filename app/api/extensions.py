"""Flask extensions of the REST edge, created unbound and bound in ``create_app``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter
from flask_smorest import Api
from flask_smorest import Blueprint as _Blueprint
from webargs.flaskparser import FlaskParser

from app.api.openapi import ContractExtras, ErrorResponses
from app.api.ratelimit import address_key
from app.errors import ValidationFailed


class _Parser(FlaskParser):
    # The contract answers validation failures with 400 (DESIGN §3), not 422.
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(_Blueprint):
    """flask-smorest's Blueprint with TaskForge's argument parser; required bodies are required.

    flask-smorest documents ``required=True`` bodies but webargs reads a missing
    body as ``{}``; refusing it keeps the served contract true.
    """

    ARGUMENTS_PARSER = _Parser()

    def arguments(
        self, schema: Any, *, location: str = "json", required: bool = True, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if isinstance(schema, type):
            # Once per route: webargs would build a schema class anew for every request.
            schema = schema()
        decorator = super().arguments(schema, location=location, required=required, **kwargs)
        if location != "json" or not required:
            return decorator

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            parsed = decorator(view)

            @functools.wraps(parsed)
            def require_body(*args: Any, **view_kwargs: Any) -> Any:
                if not request.get_data(cache=True):
                    raise ValidationFailed(
                        "A JSON request body is required", errors={"json": ["Missing body."]}
                    )
                return parsed(*args, **view_kwargs)

            return require_body

        return decorate


def make_api() -> Api:
    """A new flask-smorest Api: it keeps one app and one spec, so one per app."""
    return Api(spec_kwargs={"extra_plugins": [ContractExtras(), ErrorResponses()]})


class AppLimiter(Limiter):
    """flask-limiter's ``Limiter``, with each app's storage options its own.

    ``Limiter.init_app`` merges ``RATELIMIT_STORAGE_OPTIONS`` into what earlier apps
    set, and one module-level limiter (its route decorators are module-level)
    serves every app a process creates: after an app on Redis Sentinel, a plain
    Redis app would inherit ``sentinel_kwargs`` and fail every limit.
    """

    def init_app(self, app: Flask) -> None:
        """Initialise for ``app`` with the storage options of its config alone."""
        self._storage_options = {}
        super().init_app(app)


limiter = AppLimiter(key_func=address_key, headers_enabled=True)
