"""REDIS_URL as one server or as Sentinels: what each client is told."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings
from app.redis_client import (
    RedisURLError,
    celery_transport_options,
    limits_storage_options,
    limits_storage_uri,
    parse_sentinel_url,
)

SENTINELS = "sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26380/2;sentinel://:pw@s3/2"


def test_a_sentinel_url_names_every_sentinel_with_the_masters_password_and_db() -> None:
    target = parse_sentinel_url(SENTINELS, "main")
    assert target.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (target.master, target.password, target.db) == ("main", "pw", 2)


@pytest.mark.parametrize(
    ("url", "master", "complaint"),
    [
        (SENTINELS, "", "TASKFORGE_REDIS_SENTINEL_MASTER"),
        ("sentinel://s1:26379/0;redis://s2:6379/0", "main", "is not sentinel://"),
        ("sentinel://s1:26379/zero", "main", "not a number"),
        ("sentinel://s1:99999/0", "main", "invalid port"),
        ("sentinel://:a@s1/0;sentinel://:b@s2/0", "main", "same password and db"),
        ("sentinel://s1/0;sentinel://s2/1", "main", "same password and db"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_the_reason(
    url: str, master: str, complaint: str
) -> None:
    with pytest.raises(RedisURLError, match=complaint):
        parse_sentinel_url(url, master)


def test_settings_refuse_sentinels_without_a_master_name() -> None:
    with pytest.raises(ConfigError, match="TASKFORGE_REDIS_SENTINEL_MASTER"):
        load_settings(redis_url=SENTINELS, redis_sentinel_master="")
    assert load_settings(redis_url=SENTINELS, redis_sentinel_master="main").redis_url == SENTINELS


def test_celery_and_limits_are_told_the_master_only_for_sentinel_urls() -> None:
    plain = "redis://127.0.0.1:6399/0"
    assert celery_transport_options(plain, None) == {}
    assert limits_storage_uri(plain, None) == plain
    assert "sentinel_kwargs" not in limits_storage_options(plain)

    assert celery_transport_options(SENTINELS, "main") == {"master_name": "main"}
    assert limits_storage_uri(SENTINELS, "main") == (
        "redis+sentinel://:pw@s1:26379,s2:26380,s3:26379/main"
    )
    options = limits_storage_options(SENTINELS)
    assert options["db"] == 2
    assert options["use_replicas"] is False
    assert options["sentinel_kwargs"]["password"] is None
