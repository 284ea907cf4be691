"""Flask extensions, created unbound and bound in ``create_app``."""

from __future__ import annotations

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_smorest import Api
from flask_smorest import Blueprint as _Blueprint
from webargs.flaskparser import FlaskParser

from app.api.ratelimit import address_key


class _Parser(FlaskParser):
    # The contract answers validation failures with 400 (DESIGN §3), not 422.
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(_Blueprint):
    """flask-smorest's Blueprint with TaskForge's argument parser."""

    ARGUMENTS_PARSER = _Parser()


def make_api() -> Api:
    """A new flask-smorest Api: it keeps one app and one spec, so one per app."""
    return Api()


jwt = JWTManager()
limiter = Limiter(key_func=address_key, headers_enabled=True)
