"""Connecting to Redis and naming the mirror's keys and entry ids."""

from __future__ import annotations

import urllib.parse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_PREFIX = "esper"
DEFAULT_BATCH = 500
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def connect_redis(url: str) -> redis.Redis:
    """A client that fails fast (one reconnect attempt, no backoff): callers own retry and backoff."""
    return redis.Redis.from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 1)
    )


def entry_id(position: int) -> str:
    return f"{position}-0"


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text (redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value


def position_of(stream_entry_id: bytes | str) -> int:
    return int(as_text(stream_entry_id).split("-", 1)[0])


def category_key(prefix: str, category: str) -> str:
    return f"{prefix}:cat:{category}"


def marker_key(prefix: str) -> str:
    return f"{prefix}:mirror"


def redacted(url: str) -> str:
    """The URL without its password, for messages and the cursor file."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def url_of(client: redis.Redis) -> str:
    """The URL a client connects to (for the cursor file's name when no URL was given)."""
    kwargs = client.get_connection_kwargs()
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
