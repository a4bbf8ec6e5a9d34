"""One settings object, built once at start-up from ``MONODUTY_*`` variables and passed down.

The engine never reads ``os.environ`` itself: ``Settings.from_env`` is called by the composition
root (the CLI) and by tests with an explicit mapping. Every variable may also be given as
``<NAME>_FILE`` (a path whose content is the value), the usual way to pass secrets to containers.
"""

from __future__ import annotations

import builtins
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

SmtpTls = Literal["none", "starttls", "tls"]


class SettingsError(ValueError):
    """A configuration value is malformed; the message names the variable, never its value."""


@dataclass(frozen=True)
class RateLimit:
    """``count`` requests per ``seconds``, parsed from strings like ``600/minute``."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str, name: str) -> RateLimit:
        units = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*", text)
        if not match or int(match.group(1)) < 1:
            raise SettingsError(f"{name} must look like '600/minute' (count/second|minute|hour|day)")
        multiple = int(match.group(2) or 1)
        return cls(int(match.group(1)), multiple * units[match.group(3)])

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)  # secrets stay out of repr(): tracebacks, debug lines
    tls: SmtpTls
    from_addr: str
    timeout: float = 15.0


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    base_url: str = "https://api.twilio.com"


@dataclass(frozen=True)
class NtfySettings:
    url: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_url: str | None = field(default=None, repr=False)
    public_url: str | None = None
    dev: bool = False
    smtp: SmtpSettings | None = None
    twilio: TwilioSettings | None = None
    ntfy: NtfySettings | None = None
    max_attempts: int = 5
    retry_base_delay: float = 2.0
    require_https: bool = True
    allow_signup: bool = False
    rate_limit_api: RateLimit = field(default_factory=lambda: RateLimit(600, 60))
    rate_limit_inbound: RateLimit = field(default_factory=lambda: RateLimit(120, 60))
    trusted_proxies: tuple[str, ...] = ()
    # None: inbound alerts follow require_https; off lets in-cluster senders post over plain HTTP.
    require_https_inbound: bool | None = None
    session_ttl: int = 86400
    inbound_body_limit: int = 256 * 1024
    provider_timeout: float = 10.0
    worker_concurrency: int = 200
    # Sends at once per channel in one worker process: a hung provider holds at most this many slots.
    channel_concurrency: int = 40
    worker_poll_delay: float = 0.02
    job_timeout: int = 20
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    metrics_token: str | None = field(default=None, repr=False)
    report_max_days: int = 366
    shutdown_grace: int = 25
    queue_name: str = "arq:queue"
    status_timeout: float = 1.0
    status_max_queue_age: float = 60.0

    @property
    def https_inbound(self) -> bool:
        """Whether POST /<token> refuses plain HTTP too."""
        return self.require_https if self.require_https_inbound is None else self.require_https_inbound

    @property
    def outbox(self) -> bool:
        """In dev every channel writes to the outbox: nothing leaves the machine."""
        return self.dev

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev: bool = False) -> Settings:
        reader = _Reader(env)
        provider_timeout = reader.float("MONODUTY_PROVIDER_TIMEOUT", 10.0)
        smtp_host = reader.str("MONODUTY_SMTP_HOST")
        smtp = None
        if smtp_host:
            tls = (reader.str("MONODUTY_SMTP_TLS") or "starttls").lower()
            if tls not in ("none", "starttls", "tls"):
                raise SettingsError("MONODUTY_SMTP_TLS must be one of none, starttls, tls")
            default_port = {"none": 25, "starttls": 587, "tls": 465}[tls]
            smtp = SmtpSettings(
                host=smtp_host,
                port=reader.int("MONODUTY_SMTP_PORT", default_port),
                username=reader.str("MONODUTY_SMTP_USERNAME"),
                password=reader.str("MONODUTY_SMTP_PASSWORD"),
                tls=tls,  # type: ignore[arg-type]
                from_addr=reader.str("MONODUTY_SMTP_FROM") or "monoduty@localhost",
                timeout=provider_timeout,
            )
        twilio = None
        sid = reader.str("MONODUTY_TWILIO_ACCOUNT_SID")
        if sid:
            token = reader.str("MONODUTY_TWILIO_AUTH_TOKEN")
            from_number = reader.str("MONODUTY_TWILIO_FROM")
            if not token or not from_number:
                raise SettingsError(
                    "MONODUTY_TWILIO_AUTH_TOKEN and MONODUTY_TWILIO_FROM are required with "
                    "MONODUTY_TWILIO_ACCOUNT_SID"
                )
            twilio = TwilioSettings(
                account_sid=sid,
                auth_token=token,
                from_number=from_number,
                base_url=(reader.str("MONODUTY_TWILIO_BASE_URL") or "https://api.twilio.com").rstrip("/"),
            )
        ntfy = None
        ntfy_url = reader.str("MONODUTY_NTFY_URL")
        if ntfy_url:
            ntfy = NtfySettings(url=ntfy_url.rstrip("/"), token=reader.str("MONODUTY_NTFY_TOKEN"))
        log_format = (reader.str("MONODUTY_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise SettingsError("MONODUTY_LOG_FORMAT must be text or json")
        return cls(
            database_url=reader.str("MONODUTY_DATABASE_URL"),
            redis_url=reader.str("MONODUTY_REDIS_URL"),
            public_url=(reader.str("MONODUTY_PUBLIC_URL") or "").rstrip("/") or None,
            dev=dev,
            smtp=smtp,
            twilio=twilio,
            ntfy=ntfy,
            max_attempts=reader.int("MONODUTY_MAX_ATTEMPTS", 5, minimum=1),
            retry_base_delay=reader.float("MONODUTY_RETRY_BASE_DELAY", 2.0),
            require_https=reader.bool("MONODUTY_REQUIRE_HTTPS", not dev),
            allow_signup=reader.bool("MONODUTY_ALLOW_SIGNUP", dev),
            rate_limit_api=RateLimit.parse(
                reader.str("MONODUTY_RATE_LIMIT_API") or "600/minute", "MONODUTY_RATE_LIMIT_API"
            ),
            rate_limit_inbound=RateLimit.parse(
                reader.str("MONODUTY_RATE_LIMIT_INBOUND") or "120/minute", "MONODUTY_RATE_LIMIT_INBOUND"
            ),
            trusted_proxies=_proxies(reader.str("MONODUTY_TRUSTED_PROXIES")),
            require_https_inbound=reader.optional_bool("MONODUTY_REQUIRE_HTTPS_INBOUND"),
            session_ttl=reader.int("MONODUTY_SESSION_TTL", 86400, minimum=60),
            inbound_body_limit=reader.int("MONODUTY_INBOUND_BODY_LIMIT", 256 * 1024, minimum=1024),
            provider_timeout=provider_timeout,
            worker_concurrency=reader.int("MONODUTY_WORKER_CONCURRENCY", 200, minimum=1),
            channel_concurrency=reader.int("MONODUTY_CHANNEL_CONCURRENCY", 40, minimum=1),
            worker_poll_delay=reader.float("MONODUTY_WORKER_POLL_DELAY", 0.02),
            job_timeout=reader.int("MONODUTY_JOB_TIMEOUT", 20, minimum=1),
            log_format=log_format,  # type: ignore[arg-type]
            log_level=(reader.str("MONODUTY_LOG_LEVEL") or "INFO").upper(),
            metrics_token=reader.str("MONODUTY_METRICS_TOKEN"),
            status_timeout=reader.float("MONODUTY_STATUS_TIMEOUT", 1.0),
            status_max_queue_age=reader.float("MONODUTY_STATUS_MAX_QUEUE_AGE", 60.0),
            report_max_days=reader.int("MONODUTY_REPORT_MAX_DAYS", 366, minimum=1),
            shutdown_grace=reader.int("MONODUTY_SHUTDOWN_GRACE", 25),
        )


def _proxies(raw: str | None) -> tuple[str, ...]:
    """Addresses or CIDR ranges, checked here so that a typo stops the start rather than trusting nobody."""
    proxies = tuple(p.strip() for p in (raw or "").split(",") if p.strip())
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError("MONODUTY_TRUSTED_PROXIES must be IP addresses or CIDR ranges") from None
    return proxies


class _Reader:
    """Strict typed access to the environment, with ``*_FILE`` indirection.

    Its methods are named after the types they return, so inside the class those names are the
    methods: annotations spell the types ``builtins.str`` and so on.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: builtins.str) -> builtins.str | None:
        value = self.env.get(name)
        path = self.env.get(f"{name}_FILE")
        if value is not None and path is not None:
            raise SettingsError(f"set either {name} or {name}_FILE, not both")
        if path is not None:
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{name}_FILE: cannot read the file ({exc.strerror})") from None
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def int(self, name: builtins.str, default: builtins.int, *, minimum: builtins.int = 0) -> builtins.int:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        return value

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number") from None
        if value < 0:
            raise SettingsError(f"{name} must not be negative")
        return value

    def optional_bool(self, name: builtins.str) -> builtins.bool | None:
        return None if self.str(name) is None else self.bool(name, False)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.str(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be on/off (true/false, 1/0)")
