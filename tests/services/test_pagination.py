"""Page-number pagination of every list call."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.models import Queue
from app.services.actors import Actor
from app.services.pagination import MAX_PAGE_SIZE, paginate
from tests.support import factories


def test_a_page_counts_the_whole_result(session: Session, actor: Actor) -> None:
    for name in "abcde":
        factories.queue(session, actor, name)
    page = paginate(session, select(Queue).order_by(Queue.name), page=2, limit=2)
    assert ([q.name for q in page.items], page.total, page.pages) == (["c", "d"], 5, 3)


@pytest.mark.parametrize(("page", "limit"), [(0, 10), (1, 0), (1, MAX_PAGE_SIZE + 1)])
def test_pages_and_sizes_are_bounded(session: Session, page: int, limit: int) -> None:
    with pytest.raises(ValidationFailed):
        paginate(session, select(Queue), page=page, limit=limit)
