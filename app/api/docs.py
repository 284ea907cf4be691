"""Swagger UI's assets, served from the ``swagger-ui-bundle`` package.

``/api/v1/docs`` (flask-smorest's page) loads them from here, so the browsable
API works with no network beyond this server.  Redoc is not offered: no package
ships its bundle without pulling in another web framework.
"""

from __future__ import annotations

from flask import Blueprint
from swagger_ui_bundle import swagger_ui_path

ASSETS_PATH = "/api/v1/docs/assets"

# Named under "api-docs" like flask-smorest's own blueprint: documentation, not API routes.
blp = Blueprint(
    "api-docs-assets", __name__, static_folder=str(swagger_ui_path), static_url_path=ASSETS_PATH
)
