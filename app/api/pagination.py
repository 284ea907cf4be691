"""The ``{<items>: [...], pagination: {...}}`` body every list answers with."""

from __future__ import annotations

from typing import Any

from app.services.pagination import Page


def page_body(key: str, page: Page[Any]) -> dict[str, Any]:
    """Shape a service ``Page`` as the list body of the contract."""
    return {
        key: page.items,
        "pagination": {
            "page": page.page,
            "limit": page.limit,
            "total": page.total,
            "pages": page.pages,
            # Dumped only by the lists that walk by cursor (``JobPaginationSchema``).
            "next_after": page.next_after,
        },
    }
