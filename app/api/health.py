"""/healthz and /readyz."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.context import runtime
from app.db import get_engine

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process lives."""
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when SQL and the broker answer, else 503 naming what failed."""
    checks = {
        "database": _database_ok(),
        "broker": runtime().broker.ping(),
    }
    ready = all(checks.values())
    body = {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
    if ready:
        response = jsonify(status="ready", checks=body)
    else:
        failed = ", ".join(name for name, ok in checks.items() if not ok)
        response = jsonify(error=f"Not ready: {failed} unavailable", status_code=503, checks=body)
        response.status_code = 503
    return response


def _database_ok() -> bool:
    try:
        with get_engine(runtime().database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True
