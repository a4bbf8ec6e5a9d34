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

from engine import redis_url as redis_urls

SmtpTls = Literal["none", "starttls", "tls"]
# What stands between Monoduty and PostgreSQL: nothing, or PgBouncer in transaction mode.
DatabasePooler = Literal["none", "pgbouncer"]


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
    # Calls ask Twilio to tell a person from a voicemail or fax (MachineDetection=Enable): a
    # machine is hung up on, and the page counts as not answered (engine.channels.call).
    machine_detection: bool = False


@dataclass(frozen=True)
class NtfySettings:
    url: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TelegramSettings:
    bot_token: str = field(repr=False)
    base_url: str = "https://api.telegram.org"


@dataclass(frozen=True)
class MatrixSettings:
    homeserver_url: str
    access_token: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_url: str | None = field(default=None, repr=False)
    # PgBouncer in transaction mode: no prepared statements kept across transactions (engine.db),
    # and what needs a session of its own (LISTEN, migrations) goes to database_direct_url.
    database_pooler: DatabasePooler = "none"
    database_direct_url: str | None = field(default=None, repr=False)
    public_url: str | None = None
    dev: bool = False
    smtp: SmtpSettings | None = None
    twilio: TwilioSettings | None = None
    ntfy: NtfySettings | None = None
    telegram: TelegramSettings | None = None
    matrix: MatrixSettings | None = None
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
    inbound_body_limit: int = 1024 * 1024  # a 1,000-alert Alertmanager group is about 540 KB
    provider_timeout: float = 10.0
    worker_concurrency: int = 200
    # Sends at once per channel in one worker process: a hung provider holds at most this many slots.
    channel_concurrency: int = 40
    worker_poll_delay: float = 0.02
    job_timeout: int = 20
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    metrics_token: str | None = field(default=None, repr=False)
    # Signs what the service hands out as a URL (calendar feeds); None: those features are off.
    secret_key: str | None = field(default=None, repr=False)
    report_max_days: int = 366
    shutdown_grace: int = 25
    queue_name: str = "arq:queue"
    status_timeout: float = 1.0
    status_max_queue_age: float = 60.0
    # Open incidents per webhook before alerts with new keys join one overflow incident.
    max_open_incidents: int = 200
    # New incidents a minute per webhook that page at once; past it their pages wait for a digest.
    storm_threshold: int = 20
    # How often every worker sweeps for due escalation steps and pages (wake-up jobs come sooner).
    escalation_sweep_seconds: int = 5
    # Seconds between two messages to one contact (engine.oncall.throttles); what comes meanwhile
    # is bundled. And each channel's sliding windows: (messages, within seconds).
    page_bundle_seconds: float = 60.0
    throttle_call: tuple[tuple[int, float], ...] = ((3, 900.0), (7, 3600.0), (15, 10800.0))
    throttle_sms: tuple[tuple[int, float], ...] = ((5, 900.0), (11, 3600.0), (21, 10800.0))
    # The shortest period and grace a heartbeat may have, in seconds.
    min_heartbeat_period: int = 60
    # How often one worker sweeps for heartbeats whose grace ran out.
    heartbeat_sweep_seconds: int = 5
    # Targets that resolve to loopback, private or link-local addresses are refused at send time
    # (engine.channels.egress) unless this is on: a LAN chat server, the tests.
    allow_private_targets: bool = False

    @property
    def https_inbound(self) -> bool:
        """Whether POST /<token> refuses plain HTTP too."""
        return self.require_https if self.require_https_inbound is None else self.require_https_inbound

    @property
    def pgbouncer(self) -> bool:
        """Whether MONODUTY_DATABASE_URL goes through PgBouncer in transaction mode."""
        return self.database_pooler == "pgbouncer"

    @property
    def session_database_url(self) -> str | None:
        """The URL for what needs one server session throughout (LISTEN, migrations)."""
        return self.database_direct_url or self.database_url

    @property
    def outbox(self) -> bool:
        """In dev every channel writes to the outbox: nothing leaves the machine."""
        return self.dev

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev: bool = False) -> Settings:
        """Settings from ``MONODUTY_*`` variables; what is unset keeps the field's default above
        (the one place defaults are written), except the few that follow ``dev``."""
        reader = _Reader(env)
        d = cls()  # the defaults, written once: on the fields above
        provider_timeout = reader.float("MONODUTY_PROVIDER_TIMEOUT", d.provider_timeout)
        pooler = reader.choice("MONODUTY_DATABASE_POOLER", ("none", "pgbouncer"), d.database_pooler)
        direct_url = reader.str("MONODUTY_DATABASE_DIRECT_URL")
        if pooler == "pgbouncer" and not direct_url:
            raise SettingsError(
                "MONODUTY_DATABASE_POOLER=pgbouncer needs MONODUTY_DATABASE_DIRECT_URL (PostgreSQL itself"
                " or a session-mode pool): the dashboard's live updates LISTEN, which transaction pools drop"
            )
        return cls(
            database_url=reader.str("MONODUTY_DATABASE_URL"),
            redis_url=_redis_url(reader.str("MONODUTY_REDIS_URL")),
            database_pooler=pooler,  # type: ignore[arg-type]
            database_direct_url=direct_url,
            public_url=(reader.str("MONODUTY_PUBLIC_URL") or "").rstrip("/") or None,
            dev=dev,
            smtp=_smtp(reader, provider_timeout),
            twilio=_twilio(reader),
            ntfy=_ntfy(reader),
            telegram=_telegram(reader),
            matrix=_matrix(reader),
            max_attempts=reader.int("MONODUTY_MAX_ATTEMPTS", d.max_attempts, minimum=1),
            retry_base_delay=reader.float("MONODUTY_RETRY_BASE_DELAY", d.retry_base_delay),
            require_https=reader.bool("MONODUTY_REQUIRE_HTTPS", not dev),
            allow_signup=reader.bool("MONODUTY_ALLOW_SIGNUP", dev),
            rate_limit_api=reader.rate("MONODUTY_RATE_LIMIT_API", d.rate_limit_api),
            rate_limit_inbound=reader.rate("MONODUTY_RATE_LIMIT_INBOUND", d.rate_limit_inbound),
            trusted_proxies=_proxies(reader.str("MONODUTY_TRUSTED_PROXIES")),
            require_https_inbound=reader.optional_bool("MONODUTY_REQUIRE_HTTPS_INBOUND"),
            session_ttl=reader.int("MONODUTY_SESSION_TTL", d.session_ttl, minimum=60),
            inbound_body_limit=reader.int("MONODUTY_INBOUND_BODY_LIMIT", d.inbound_body_limit, minimum=1024),
            provider_timeout=provider_timeout,
            worker_concurrency=reader.int("MONODUTY_WORKER_CONCURRENCY", d.worker_concurrency, minimum=1),
            channel_concurrency=reader.int("MONODUTY_CHANNEL_CONCURRENCY", d.channel_concurrency, minimum=1),
            worker_poll_delay=reader.float("MONODUTY_WORKER_POLL_DELAY", d.worker_poll_delay),
            job_timeout=reader.int("MONODUTY_JOB_TIMEOUT", d.job_timeout, minimum=1),
            log_format=reader.choice("MONODUTY_LOG_FORMAT", ("text", "json"), d.log_format),  # type: ignore[arg-type]
            log_level=(reader.str("MONODUTY_LOG_LEVEL") or d.log_level).upper(),
            metrics_token=reader.str("MONODUTY_METRICS_TOKEN"),
            secret_key=_secret_key(reader.str("MONODUTY_SECRET_KEY")),
            status_timeout=reader.float("MONODUTY_STATUS_TIMEOUT", d.status_timeout),
            status_max_queue_age=reader.float("MONODUTY_STATUS_MAX_QUEUE_AGE", d.status_max_queue_age),
            report_max_days=reader.int("MONODUTY_REPORT_MAX_DAYS", d.report_max_days, minimum=1),
            shutdown_grace=reader.int("MONODUTY_SHUTDOWN_GRACE", d.shutdown_grace),
            max_open_incidents=reader.int("MONODUTY_MAX_OPEN_INCIDENTS", d.max_open_incidents, minimum=1),
            storm_threshold=reader.int("MONODUTY_STORM_THRESHOLD", d.storm_threshold, minimum=1),
            escalation_sweep_seconds=reader.int(
                "MONODUTY_ESCALATION_SWEEP_SECONDS", d.escalation_sweep_seconds, minimum=1
            ),
            page_bundle_seconds=reader.float("MONODUTY_PAGE_BUNDLE_SECONDS", d.page_bundle_seconds),
            throttle_call=reader.windows("MONODUTY_THROTTLE_CALL", d.throttle_call),
            throttle_sms=reader.windows("MONODUTY_THROTTLE_SMS", d.throttle_sms),
            min_heartbeat_period=reader.int(
                "MONODUTY_MIN_HEARTBEAT_PERIOD", d.min_heartbeat_period, minimum=1
            ),
            heartbeat_sweep_seconds=reader.int(
                "MONODUTY_HEARTBEAT_SWEEP_SECONDS", d.heartbeat_sweep_seconds, minimum=1
            ),
            allow_private_targets=reader.bool("MONODUTY_ALLOW_PRIVATE_TARGETS", d.allow_private_targets),
        )


# A key shorter than this is a typo or a placeholder, not 128 bits of secret.
MIN_SECRET_KEY = 32


def _redis_url(raw: str | None) -> str | None:
    if raw is not None:
        try:
            redis_urls.check(raw)
        except redis_urls.RedisUrlError as exc:
            raise SettingsError(f"MONODUTY_REDIS_URL {exc}") from None
    return raw


def _secret_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if len(raw.strip()) < MIN_SECRET_KEY:
        raise SettingsError(
            f"MONODUTY_SECRET_KEY must be at least {MIN_SECRET_KEY} characters "
            "(e.g. the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return raw.strip()


# The port of each MONODUTY_SMTP_TLS mode, when MONODUTY_SMTP_PORT is unset.
SMTP_PORTS = {"none": 25, "starttls": 587, "tls": 465}


# A provider is configured when its first variable is set (host, account sid, URL); the rest
# are then read and checked.


def _smtp(reader: _Reader, timeout: float) -> SmtpSettings | None:
    host = reader.str("MONODUTY_SMTP_HOST")
    if not host:
        return None
    tls = reader.choice("MONODUTY_SMTP_TLS", tuple(SMTP_PORTS), "starttls")
    return SmtpSettings(
        host=host,
        port=reader.int("MONODUTY_SMTP_PORT", SMTP_PORTS[tls]),
        username=reader.str("MONODUTY_SMTP_USERNAME"),
        password=reader.str("MONODUTY_SMTP_PASSWORD"),
        tls=tls,  # type: ignore[arg-type]
        from_addr=reader.str("MONODUTY_SMTP_FROM") or "monoduty@localhost",
        timeout=timeout,
    )


def _twilio(reader: _Reader) -> TwilioSettings | None:
    sid = reader.str("MONODUTY_TWILIO_ACCOUNT_SID")
    if not sid:
        return None
    token = reader.str("MONODUTY_TWILIO_AUTH_TOKEN")
    from_number = reader.str("MONODUTY_TWILIO_FROM")
    if not token or not from_number:
        raise SettingsError(
            "MONODUTY_TWILIO_AUTH_TOKEN and MONODUTY_TWILIO_FROM are required with "
            "MONODUTY_TWILIO_ACCOUNT_SID"
        )
    base_url = reader.str("MONODUTY_TWILIO_BASE_URL") or TwilioSettings.base_url
    return TwilioSettings(
        account_sid=sid,
        auth_token=token,
        from_number=from_number,
        base_url=base_url.rstrip("/"),
        machine_detection=reader.bool("MONODUTY_TWILIO_MACHINE_DETECTION", False),
    )


def _ntfy(reader: _Reader) -> NtfySettings | None:
    url = reader.str("MONODUTY_NTFY_URL")
    return NtfySettings(url=url.rstrip("/"), token=reader.str("MONODUTY_NTFY_TOKEN")) if url else None


def _telegram(reader: _Reader) -> TelegramSettings | None:
    token = reader.str("MONODUTY_TELEGRAM_BOT_TOKEN")
    if not token:
        return None
    base_url = reader.str("MONODUTY_TELEGRAM_BASE_URL") or TelegramSettings.base_url
    return TelegramSettings(bot_token=token, base_url=base_url.rstrip("/"))


def _matrix(reader: _Reader) -> MatrixSettings | None:
    url = reader.str("MONODUTY_MATRIX_HOMESERVER_URL")
    if not url:
        return None
    token = reader.str("MONODUTY_MATRIX_ACCESS_TOKEN")
    if not token:
        raise SettingsError("MONODUTY_MATRIX_ACCESS_TOKEN is required with MONODUTY_MATRIX_HOMESERVER_URL")
    return MatrixSettings(homeserver_url=url.rstrip("/"), access_token=token)


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

    def windows(
        self, name: builtins.str, default: tuple[tuple[builtins.int, builtins.float], ...]
    ) -> tuple[tuple[builtins.int, builtins.float], ...]:
        """Sliding windows ``3/15m,7/1h`` (messages/period, period in s, m, h or d); ``off`` for none."""
        raw = self.str(name)
        if raw is None:
            return default
        if raw.lower() in ("off", "none"):
            return ()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        windows = []
        for part in raw.split(","):
            count, _, period = part.strip().partition("/")
            unit = units.get(period[-1:].lower()) if period else None
            amount = period[:-1]
            if (
                not count.isdigit()
                or int(count) < 1
                or unit is None
                or not amount.isdigit()
                or int(amount) < 1
            ):
                raise SettingsError(
                    f"{name} must look like 3/15m,7/1h (messages/period: s, m, h or d), or off"
                )
            windows.append((int(count), float(int(amount) * unit)))
        return tuple(windows)

    def choice(
        self, name: builtins.str, choices: tuple[builtins.str, ...], default: builtins.str
    ) -> builtins.str:
        """One of ``choices`` (any case), or ``default`` when unset."""
        value = (self.str(name) or default).lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}")
        return value

    def rate(self, name: builtins.str, default: RateLimit) -> RateLimit:
        raw = self.str(name)
        return default if raw is None else RateLimit.parse(raw, name)

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
