"""What ``MONODUTY_REDIS_URL`` names: one Redis server, or a primary found through Redis Sentinel.

Plain URLs are redis-py's own (``redis://``, ``rediss://``, ``unix://``). A Sentinel URL lists the
sentinels and names the service (the ``sentinel monitor <name> ...`` of their config)::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>][?sentinel_password=...]

The user and password are the Redis servers' (primary and replicas); the sentinels are asked
without credentials unless ``sentinel_password`` is given. ``engine.queue.connect`` turns either
form into a client; this module only reads the text, so a bad URL is refused at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
FORMAT = "redis+sentinel://[:password@]host:port[,host:port...]/<service name>[/<db>]"


class RedisUrlError(ValueError):
    """The URL is malformed; the message says what is wrong, never the URL (it may hold a password)."""


@dataclass(frozen=True)
class SentinelTarget:
    """The sentinels to ask, the service whose primary they name, and how to talk to that primary."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    return url.lower().startswith(SENTINEL_SCHEME + "://")


def check(url: str) -> None:
    """Raise ``RedisUrlError`` unless ``url`` is a Redis URL Monoduty can connect with."""
    scheme = url.partition("://")[0].lower()
    if scheme == SENTINEL_SCHEME:
        parse_sentinel(url)
    elif scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(
            f"must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}:// ({FORMAT})"
        )


def parse_sentinel(url: str) -> SentinelTarget:
    """A ``redis+sentinel://`` URL read into its parts (see the module's docstring)."""
    if not is_sentinel(url):
        raise RedisUrlError(f"is not a Sentinel URL ({FORMAT})")
    rest = url[len(SENTINEL_SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, password = None, None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    parts = [p for p in path.split("/")]
    if not parts or not parts[0]:
        raise RedisUrlError(f"names no Sentinel service after the hosts ({FORMAT})")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError(f"has a path other than /<service name>[/<db number>] ({FORMAT})")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise RedisUrlError(f"has unknown options {sorted(unknown)}: only sentinel_password is read")
    sentinel_password = options.get("sentinel_password", [None])[-1]
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=sentinel_password or None,
    )


def _host_port(text: str) -> tuple[str, int]:
    # [::1]:26379 as well as 127.0.0.1:26379 and sentinel-1:26379; the port is required, as
    # sentinels rarely listen on Redis's 6379.
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"lists a sentinel that is not host:port ({FORMAT})")
    return host, int(port)
