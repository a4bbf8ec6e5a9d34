"""Domain errors the engine raises; the API turns each into the seed's error format.

MonodutyError(status, code, message)
 ├─ ValidationError      400, names the offending field
 ├─ NotFound             404 (also for another user's object: existence is not revealed)
 ├─ Conflict             409
 ├─ PayloadTooLarge      413
 └─ ...                  any other status/code pair, raised directly
"""

from __future__ import annotations

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError


class MonodutyError(Exception):
    """An error a client may see. The message must never hold a secret, SQL or a stack trace."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ValidationError(MonodutyError):
    status = 400
    code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class Unauthorized(MonodutyError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(MonodutyError):
    status = 403
    code = "FORBIDDEN"


class NotFound(MonodutyError):
    status = 404
    code = "NOT_FOUND"


class Conflict(MonodutyError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(MonodutyError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")
        self.limit = limit


class Unavailable(MonodutyError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


# PostgreSQL cancelled a statement (its statement_timeout or lock_timeout, or an operator's
# pg_cancel_backend): busy for now, not wrong. A job that met one was failed for good, its alert lost.
STORAGE_BUSY: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.LockNotAvailableError,
)

# "The storage is out of reach for now", as opposed to a bug or bad data (those still fail the job).
STORAGE_DOWN: tuple[type[BaseException], ...] = (
    *STORAGE_BUSY,
    OSError,  # refused, reset, unreachable
    TimeoutError,  # no answer: our deadline, or a driver's own timeout (an OSError too; said plainly)
    asyncpg.PostgresConnectionError,  # class 08, and a connection lost mid-query
    asyncpg.InterfaceError,  # the connection or the pool was closed under us
    # A connection the server ended mid-statement, failing again as the pool resets it on release
    # ("cannot switch to state ..."): the pool has closed it; the next try gets a new one. It
    # masked the real (transient) error and failed a deliver job for good, its delivery pending.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting or recovering
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    RedisConnectionError,  # refused, reset, still loading its data after a restart
    RedisTimeoutError,  # no answer within queue.COMMAND_TIMEOUT_SECONDS: a stalled server
    # redis-py turns a connection lost inside a WATCH into a WatchError, and arq lets that one
    # escape (it catches only the WatchError of a real conflict, at EXEC): a reset, not a conflict.
    WatchError,
    ReadOnlyError,  # a failover under way: we reached a replica
    MasterDownError,  # a replica that lost its primary
    OutOfMemoryError,  # full for now (maxmemory): writes resume as workers drain the queue
)
