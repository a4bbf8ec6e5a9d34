"""Prometheus metrics for the whole deployment, aggregated in Redis.

API processes and workers run as many processes on as many hosts as the operator likes, so no
one process knows the totals. Each process counts into a ``MetricsBuffer`` in memory (no I/O on
the request or delivery path) and flushes it to one Redis hash with HINCRBYFLOAT about once a
second and when it stops. ``GET /metrics`` on any API process reads that hash (plus the queue
depth, read at scrape time) and renders it with prometheus-client, so one scrape sees the whole
cluster, like a single process would. Counts survive process restarts (and, with AOF, Redis
restarts); at most the last second of a crashed process's counts is lost.

Hash fields are ``<name>|<label>=<value>,...|<suffix>`` where the suffix is ``total`` for
counters and ``sum``, ``count`` or ``le=<bound>`` (cumulative) for histograms.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence

from arq.connections import ArqRedis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from engine import queue_inspect

METRICS_KEY = "monoduty:metrics"

REQUESTS = "monoduty_http_requests"
REQUEST_DURATION = "monoduty_http_request_duration_seconds"
ALERTS_ACCEPTED = "monoduty_alerts_accepted"
ALERTS_FINISHED = "monoduty_alerts_finished"
DELIVERIES = "monoduty_deliveries"
DELIVERY_LATENCY = "monoduty_delivery_latency_seconds"

# name -> (kind, help, label names)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    REQUESTS: ("counter", "HTTP requests by method, route pattern and status", ("method", "route", "status")),
    REQUEST_DURATION: ("histogram", "HTTP request duration by route pattern", ("route",)),
    ALERTS_ACCEPTED: ("counter", "Inbound alerts accepted (202) and queued", ()),
    ALERTS_FINISHED: ("counter", "Alerts whose last delivery became final, by status", ("status",)),
    DELIVERIES: ("counter", "Delivery attempts by channel and outcome", ("channel", "outcome")),
    DELIVERY_LATENCY: ("histogram", "Time a provider took per delivery attempt", ("channel",)),
}
BUCKETS: dict[str, tuple[float, ...]] = {
    REQUEST_DURATION: (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    DELIVERY_LATENCY: (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
}


_UNSAFE = re.compile(r"[|,=]")


def _field(name: str, labels: Sequence[str], suffix: str) -> str:
    label_names = METRICS[name][2]
    pairs = ",".join(f"{k}={_UNSAFE.sub('_', v)}" for k, v in zip(label_names, labels, strict=True))
    return f"{name}|{pairs}|{suffix}"


# Series are few (route patterns x statuses, channels x outcomes): their field names are built
# once, which keeps a request's metrics to a few dict updates.
@functools.lru_cache(maxsize=4096)
def _counter_field(name: str, labels: tuple[str, ...]) -> str:
    return _field(name, labels, "total")


@functools.lru_cache(maxsize=4096)
def _histogram_fields(name: str, labels: tuple[str, ...]) -> tuple[str, str, tuple[tuple[float, str], ...]]:
    buckets = tuple((bound, _field(name, labels, f"le={bound}")) for bound in BUCKETS[name])
    return _field(name, labels, "sum"), _field(name, labels, "count"), buckets


class MetricsBuffer:
    """Counts of one process since its last flush (``|``, ``,`` and ``=`` in label values become ``_``)."""

    def __init__(self) -> None:
        self._pending: defaultdict[str, float] = defaultdict(float)

    def inc(self, name: str, *labels: str, amount: float = 1.0) -> None:
        self._pending[_counter_field(name, labels)] += amount

    def observe(self, name: str, value: float, *labels: str) -> None:
        sum_field, count_field, buckets = _histogram_fields(name, labels)
        pending = self._pending
        pending[sum_field] += value
        pending[count_field] += 1
        for bound, field in buckets:
            if value <= bound:
                pending[field] += 1

    async def flush(self, redis: Redis) -> None:
        """Add what was counted to the shared hash; on failure the counts stay for the next flush."""
        if not self._pending:
            return
        taken, self._pending = self._pending, defaultdict(float)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for field, amount in taken.items():
                    pipe.hincrbyfloat(METRICS_KEY, field, amount)
                await pipe.execute()
        except Exception:
            for field, amount in taken.items():
                self._pending[field] += amount
            raise


def _parse(raw: dict[bytes, bytes]) -> dict[str, dict[tuple[str, ...], dict[str, float]]]:
    """name -> label values -> suffix -> value."""
    parsed: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
    for key, value in raw.items():
        name, _, rest = key.decode().partition("|")
        pairs, _, suffix = rest.partition("|")
        if name not in METRICS:
            continue  # a metric a newer or older version wrote
        labels = tuple(p.partition("=")[2] for p in pairs.split(",")) if pairs else ()
        parsed.setdefault(name, {}).setdefault(labels, {})[suffix] = float(value)
    return parsed


def families(raw: dict[bytes, bytes], load: queue_inspect.QueueLoad) -> list[object]:
    """prometheus-client metric families from the Redis hash and the queue's load."""
    parsed = _parse(raw)
    result: list[object] = []
    for name, (kind, help_text, label_names) in METRICS.items():
        series = parsed.get(name, {})
        if kind == "counter":
            counter = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, values in sorted(series.items()):
                counter.add_metric(list(labels), values.get("total", 0.0))
            result.append(counter)
            continue
        histogram = HistogramMetricFamily(name, help_text, labels=label_names)
        for labels, values in sorted(series.items()):
            buckets = [(str(b), values.get(f"le={b}", 0.0)) for b in BUCKETS[name]]
            buckets.append(("+Inf", values.get("count", 0.0)))
            histogram.add_metric(list(labels), buckets, values.get("sum", 0.0))
        result.append(histogram)
    gauge = GaugeMetricFamily("monoduty_queue_jobs", "Jobs in the Redis queue by state", labels=("state",))
    for state in ("queued", "in_progress", "retrying"):
        gauge.add_metric([state], getattr(load, state))
    result.append(gauge)
    oldest = GaugeMetricFamily(
        "monoduty_queue_oldest_job_age_seconds", "How long the oldest queued job has waited (0: none)"
    )
    oldest.add_metric([], load.oldest_queued_seconds or 0.0)
    result.append(oldest)
    return result


class SnapshotCollector(Collector):
    """A collector over families read beforehand (prometheus-client collectors are synchronous)."""

    def __init__(self, snapshot: list[object]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[object]:  # type: ignore[override]
        yield from self.snapshot


async def snapshot(redis: ArqRedis, queue_name: str) -> list[object]:
    """Everything ``GET /metrics`` shows, read from Redis now."""
    raw = await redis.hgetall(METRICS_KEY)  # type: ignore[misc]
    return families(raw, await queue_inspect.load(redis, queue_name))
