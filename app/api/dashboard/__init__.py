"""The web dashboard at ``/dashboard``: one static page, two ES modules and a stylesheet.

The page itself is public and holds no data: everything it shows comes from the
authenticated REST API (``/api/v1``), called by ``static/api.js`` with the access
token kept in the tab's ``sessionStorage``.  There is no build step; every asset is
served from this package, and a strict Content-Security-Policy forbids inline
scripts and styles and any other origin.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

blp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    static_folder="static",
    template_folder="templates",
)


@blp.get("")
@blp.get("/")
def index() -> str:
    """The single page of the dashboard."""
    return render_template("dashboard/index.html")


@blp.after_request
def _content_security_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def init_app(app: Flask) -> None:
    """Serve the dashboard from ``app``."""
    app.register_blueprint(blp)
