"""Properties of the services' input rules over generated datetimes and text.

Any aware datetime a client can send is either stored and read back as the same
instant on both backends, or refused with ``ValidationFailed`` naming the field;
no other exception escapes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.db import session_factory
from app.errors import ValidationFailed
from app.services.apikeys import create_api_key
from app.services.auth import actor_for_user_id
from app.services.jobs import submit_job
from app.services.validation import check_datetime, check_json_text, check_text, is_storable
from tests.conftest import Account

# Every UTC offset a datetime can carry: strictly within one day.
offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
aware = st.datetimes(timezones=offsets)
edges = [
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]
DB_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _in_calendar(moment: datetime) -> bool:
    """Tell whether ``moment`` in UTC falls within years 1-9999 (in timedeltas: no overflow)."""
    since_min = moment.replace(tzinfo=None) - datetime.min - (moment.utcoffset() or timedelta())
    return timedelta(0) <= since_min <= datetime.max - datetime.min


@given(aware)
@example(edges[0])
@example(edges[1])
def test_check_datetime_converts_to_utc_or_names_the_field(moment: datetime) -> None:
    try:
        checked = check_datetime(moment, "when")
    except ValidationFailed as exc:
        assert exc.errors == {"when": [exc.errors["when"][0]]}
        assert not _in_calendar(moment)
    else:
        assert checked == moment and checked.tzinfo is UTC


@given(st.datetimes())
def test_a_naive_datetime_is_refused(moment: datetime) -> None:
    with pytest.raises(ValidationFailed, match="timezone"):
        check_datetime(moment, "when")


@given(aware)
@example(edges[0])
@example(edges[1])
@example(edges[2])
@example(edges[3])
@DB_SETTINGS
def test_submit_stores_any_schedule_in_the_calendar_and_refuses_the_rest(
    settings: Settings, owner: Account, queue: dict[str, str], moment: datetime
) -> None:
    session = session_factory(settings.database_url)()
    try:
        actor = actor_for_user_id(session, owner.user_id)
        try:
            job = submit_job(
                session, actor=actor, queue_id=queue["id"], job_type="echo", scheduled_for=moment
            )
        except ValidationFailed as exc:
            assert list(exc.errors) == ["scheduled_for"]
            assert not _in_calendar(moment)
            return
        session.flush()
        session.expire(job)  # read the stored value back through the column type
        assert job.scheduled_for == moment
        assert job.scheduled_for.tzinfo is not None
    finally:
        session.rollback()
        session.close()


@given(aware)
@example(edges[1])
@DB_SETTINGS
def test_api_key_expiry_is_stored_or_refused_by_field(
    settings: Settings, owner: Account, moment: datetime
) -> None:
    session = session_factory(settings.database_url)()
    try:
        actor = actor_for_user_id(session, owner.user_id)
        try:
            created = create_api_key(
                session, actor=actor, name="k", scopes=["job:read"], expires_at=moment
            )
        except ValidationFailed as exc:
            assert list(exc.errors) == ["expires_at"]
            return
        session.flush()
        session.expire(created.api_key)
        assert created.api_key.expires_at == moment
    finally:
        session.rollback()
        session.close()


@given(st.text())
def test_storable_text_is_exactly_utf8_encodable_text_without_nul(text: str) -> None:
    try:
        text.encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    assert is_storable(text) is (encodable and "\x00" not in text)


@pytest.mark.parametrize("document", [{"a\x00": 1}, {"a": ["\ud800"]}, [[["x\x00"]]], "\udfff"])
def test_json_text_checks_every_key_and_string(document: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_json_text(document, "payload")
    assert list(info.value.errors) == ["payload"]


def test_check_text_names_the_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        check_text("a\x00", "name")
    assert info.value.errors == {
        "name": ["Must not contain NUL characters or unpaired surrogates."]
    }
