"""The dashboard's page and assets: served locally, with a strict CSP, and nothing external."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app.api.dashboard import CONTENT_SECURITY_POLICY

STATIC = Path(__file__).resolve().parents[2] / "app" / "api" / "dashboard" / "static"
TEMPLATES = Path(__file__).resolve().parents[2] / "app" / "api" / "dashboard" / "templates"
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".svg": {"image/svg+xml"},
}
# Any absolute or protocol-relative URL (`//host.tld/...`, not a `// comment`).
EXTERNAL_URL = re.compile(
    r"(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+[^\s\"'<>)`]*|https?://[^\s\"'<>)`]*", re.IGNORECASE
)
# The SVG namespace names a vocabulary; nothing fetches it.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


def _assets() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def _csp(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
def test_page_is_public_html_with_a_strict_csp(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = _csp(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in response.headers["Content-Security-Policy"]


def test_page_loads_its_modules_and_has_no_inline_code(client: FlaskClient) -> None:
    html = client.get("/dashboard").get_data(as_text=True)
    assert '<script type="module" src="/dashboard/static/app.js"></script>' in html
    assert 'href="/dashboard/static/dashboard.css"' in html
    # Every script has a src; no inline handlers or style attributes (the CSP blocks them).
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.search(r"\son[a-z]+=", html) is None
    assert re.search(r"\sstyle=", html) is None
    assert "<style" not in html
    # Every form control has a label.
    controls = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    assert controls
    for control in controls:
        assert f'for="{control}"' in html, f"#{control} has no <label>"


@pytest.mark.parametrize("asset", _assets(), ids=lambda p: p.name)
def test_assets_are_served_with_their_content_type(client: FlaskClient, asset: Path) -> None:
    with client.get(f"/dashboard/static/{asset.relative_to(STATIC).as_posix()}") as response:
        assert response.status_code == 200
        assert response.mimetype in CONTENT_TYPES[asset.suffix]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.get_data() == asset.read_bytes()


def test_the_page_references_only_existing_assets(client: FlaskClient) -> None:
    html = client.get("/dashboard").get_data(as_text=True)
    referenced = set(re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html))
    assert len(referenced) >= 3
    for url in referenced:
        with client.get(url) as response:
            assert response.status_code == 200, url
    modules = set(re.findall(r'from "\./([^"]+)"', (STATIC / "app.js").read_text()))
    assert modules == {"api.js"}
    assert all((STATIC / module).is_file() for module in modules)


@pytest.mark.parametrize(
    "asset", [*_assets(), *sorted(TEMPLATES.rglob("*.html"))], ids=lambda p: p.name
)
def test_no_asset_references_an_external_url(asset: Path) -> None:
    text = asset.read_text()
    found = {m.group(0) for m in EXTERNAL_URL.finditer(text)}
    assert {url for url in found if url not in ALLOWED_URLS} == set()
    assert "cdn" not in text.lower()


@pytest.mark.parametrize("script", ["app.js", "api.js"])
def test_scripts_never_parse_server_strings_as_markup(script: str) -> None:
    text = (STATIC / script).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, f"{script} uses {sink}"


def test_unknown_asset_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/dashboard/static/nope.js")
    assert response.status_code == 404
    assert response.get_json()["status_code"] == 404
