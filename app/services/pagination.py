"""Page-number pagination shared by every list call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from app.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results with the totals a client needs to walk the rest."""

    items: Sequence[T]
    page: int
    limit: int
    total: int
    # A keyset list's cursor for the page after this full one (``jobs.list_jobs``).
    next_after: str | None = None

    @property
    def pages(self) -> int:
        """Number of pages for ``total`` items (0 when there are none)."""
        return (self.total + self.limit - 1) // self.limit


def check_page_args(page: int, limit: int) -> None:
    """Reject page numbers below 1 and sizes outside 1..100."""
    if page < 1:
        raise ValidationFailed.field("page", "Must be at least 1.")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed.field("limit", f"Must be between 1 and {MAX_PAGE_SIZE}.")


def paginate(
    session: Session,
    query: Select[Any],
    *,
    page: int,
    limit: int,
    key: ColumnElement[Any] | QueryableAttribute[Any] | None = None,
    total: int | None = None,
) -> Page[Any]:
    """Run ``query`` for one page and count the whole result, unless ``total`` is known.

    With ``key`` (the primary key), the page's keys are selected first and only
    their rows loaded: an index holding the filter, the order and the key then
    skips the earlier pages' entries without reading their rows (a "deferred
    join"), so page 2,000 costs about what page 1 does.
    """
    check_page_args(page, limit)
    if total is None:
        counted = select(func.count()).select_from(query.order_by(None).subquery())
        total = int(session.scalar(counted) or 0)
    window = query.limit(limit).offset((page - 1) * limit)
    if key is not None:
        window = query.where(key.in_(window.with_only_columns(key).scalar_subquery()))
    items = session.scalars(window).all()
    return Page(items=items, page=page, limit=limit, total=total)
