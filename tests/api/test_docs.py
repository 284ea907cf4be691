"""The browsable API works offline: every asset /api/v1/docs references is served here."""

from __future__ import annotations

from html.parser import HTMLParser

from flask.testing import FlaskClient

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}


class _References(HTMLParser):
    """Collect the ``src`` and ``href`` of a page's scripts, stylesheets and images."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.found.append(value)


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.found


def test_swagger_ui_loads_every_asset_from_this_server(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    references = _references(page.get_data(as_text=True))
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in references), references
    assert any(ref.endswith("swagger-ui.css") for ref in references), references
    for ref in references:
        assert ref.startswith("/") and not ref.startswith("//"), f"{ref} is not on this server"
        with client.get(ref) as asset:  # a file response: close it
            assert asset.status_code == 200, ref
            assert len(asset.data) > 1000, ref
            suffix = ref[ref.rfind(".") :]
            assert asset.mimetype == CONTENT_TYPES[suffix], (ref, asset.mimetype)


def test_the_page_points_swagger_ui_at_the_local_openapi_document(client: FlaskClient) -> None:
    html = client.get("/api/v1/docs").get_data(as_text=True)
    assert 'url: "/api/v1/openapi.json"' in html
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_no_page_loads_redoc_from_a_cdn(client: FlaskClient) -> None:
    assert client.get("/api/v1/redoc").status_code == 404
