"""The arq jobs. They hold no business rules: each calls the engine and turns outcomes into arq's terms."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict

import aiohttp
import asyncpg
from arq import Retry
from arq.connections import ArqRedis

from engine import queue, replicated, retry
from engine.alerts import lifecycle
from engine.alerts.lifecycle import DeliveryStatus
from engine.alerts.payloads import group_members, parse_alert
from engine.alerts.refused import refused_alert
from engine.channels import twilio
from engine.channels.base import Channel, DeliveryError, Receipt
from engine.clock import Clock
from engine.errors import STORAGE_DOWN
from engine.incidents import channel_actions, sms_codes
from engine.incidents.noise import Caps
from engine.masking import mask_target, mask_text
from engine.observability import metrics
from engine.oncall import escalation
from engine.settings import Settings
from workers.channel_slots import ChannelSlots, park, wake
from workers.outages import CONFLICTS, WAIT_CAP_SECONDS, waits_for_storage

log = logging.getLogger("monoduty.worker")


class WorkerContext(TypedDict):
    redis: ArqRedis
    settings: Settings
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    channels: dict[str, Channel]
    metrics: metrics.MetricsBuffer
    channel_slots: ChannelSlots
    clock: Clock
    escalation_gate: Any  # workers.escalations.SweepGate
    job_id: str
    job_try: int


@waits_for_storage
async def process_alert(ctx: WorkerContext, job: dict[str, Any]) -> int:
    """Parse and store one inbound alert, then make the first attempt of each of its deliveries.

    The first attempts are made here, in this job (``_fan_out``), not in a deliver job of their
    own: one queue hop less between the sender and the phone. Retries go through the queue.
    """
    # Behind Sentinel, first the job must be on a replica: a job the API wrote to a primary already
    # replaced by its replica (a planned failover) was answered 503, is on no other server, and what
    # this job would write next (its deliver jobs) would be thrown away with that primary's data.
    await replicated.confirm(ctx["redis"], job["alert_id"])
    body = job["body"].encode()
    refused = job.get("refused")
    if refused is not None:  # a body refused as too large, told to the owner (engine.alerts.refused)
        parsed = refused_alert(str(refused["sender"]), refused.get("size"), int(refused["limit"]))
    else:
        parsed = parse_alert(body, job.get("content_type"))
    async with ctx["pool"].acquire() as conn:
        stored = await lifecycle.store_alert(
            conn,
            uuid.UUID(job["alert_id"]),
            uuid.UUID(job["webhook_id"]),
            parsed,
            received_at=datetime.fromisoformat(job["received_at"]),
            is_test=bool(job.get("is_test")),
            request_id=job.get("request_id"),
            caps=Caps(ctx["settings"].max_open_incidents, ctx["settings"].storm_threshold),
            now=ctx["clock"].now(),
            members=lambda: group_members(body),
        )
    fields = {
        "alert_id": job["alert_id"],
        "webhook_id": job["webhook_id"],
        "request_id": job.get("request_id"),
    }
    if stored is None:
        log.info("alert dropped: webhook deleted", extra=fields)
        return 0
    log.info("alert stored: %d deliveries", len(stored.deliveries), extra=fields)
    # An incident it opened under an escalation policy: its first step is due now.
    async with ctx["pool"].acquire() as conn:
        wake_ups = await escalation.wake_ups_of_alert(conn, uuid.UUID(job["alert_id"]))
    await escalation.enqueue_wake_ups(ctx["redis"], ctx["clock"], wake_ups)
    # Only the run that created the deliveries sends them here: on a re-run (its worker died, or
    # storage failed under it) a delivery may already be queued or running as a deliver job, and
    # arq's job id is what keeps one delivery from being attempted twice at once.
    first_run = stored.new and int(ctx.get("job_try") or 1) == 1
    await _fan_out(ctx, stored.deliveries, first_run=first_run, request_id=job.get("request_id"))
    return len(stored.deliveries)


async def _fan_out(
    ctx: WorkerContext, deliveries: list[lifecycle.Pending], *, first_run: bool, request_id: str | None
) -> None:
    """First attempts, at once, of the deliveries whose channel has a free send slot in this worker;
    the others (every one on a re-run) are queued as deliver jobs, in one round trip.

    At least once: until this job returns, arq holds it in progress, and re-runs it if the worker
    dies; the re-run queues what is still pending. The attempts are awaited together, so none is
    left running when the job ends or fails."""
    slots = ctx["channel_slots"]
    here: list[lifecycle.Pending] = []
    for d in deliveries:
        if first_run and slots.busy(d.channel) < slots.limit:
            here.append(d)
            slots.take(d.channel, str(d.id))
    try:
        await queue.enqueue_deliveries(
            ctx["redis"], [str(d.id) for d in deliveries if d not in here], request_id=request_id
        )
    except BaseException:
        for d in here:
            slots.give_back(d.channel)
        raise
    outcomes = await asyncio.gather(
        *(_first_attempt(ctx, str(d.id), d.channel, request_id) for d in here), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # storage away: the job's retry (waits_for_storage) queues what is pending


async def _first_attempt(ctx: WorkerContext, delivery_id: str, channel: str, request_id: str | None) -> None:
    """One delivery's first attempt in process_alert, its send slot taken. What a deliver job would
    retry goes to the queue: a transient failure as a deliver job due after the backoff, an attempt
    that met a storage outage or a conflict as one due after a short wait (the attempt was counted
    or not; the deliver job's attempt cap holds either way)."""
    slots = ctx["channel_slots"]
    try:
        await _attempt(ctx, delivery_id, request_id)
    except Retry as again:
        defer = (again.defer_score or 0) / 1000
        await queue.enqueue_deliveries(ctx["redis"], [delivery_id], request_id=request_id, defer=defer)
    except (*STORAGE_DOWN, *CONFLICTS) as exc:
        delay = retry.backoff_delay(1, base=ctx["settings"].retry_base_delay, cap=WAIT_CAP_SECONDS)
        # As waits_for_storage says it of a deliver job; the type only (a driver's message may name hosts).
        log.warning(
            "deliver %s deferred %.1fs: %s (%s), first attempt in process_alert",
            delivery_id,
            delay,
            "transaction conflict" if isinstance(exc, CONFLICTS) else "storage unreachable",
            type(exc).__name__,
        )
        await queue.enqueue_deliveries(ctx["redis"], [delivery_id], request_id=request_id, defer=delay)
    except Exception:  # a bug: its deliver job meets it too, and its attempt cap ends the delivery
        log.exception("first attempt of %s failed unexpectedly; queued as a deliver job", delivery_id)
        delay = retry.backoff_delay(1, base=ctx["settings"].retry_base_delay, cap=WAIT_CAP_SECONDS)
        await queue.enqueue_deliveries(ctx["redis"], [delivery_id], request_id=request_id, defer=delay)
    finally:
        waiter = slots.give_back(channel)
        if waiter is not None:
            await wake(ctx["redis"], ctx["settings"].queue_name, waiter)


@waits_for_storage
async def deliver(ctx: WorkerContext, delivery_id: str, request_id: str | None = None) -> str:
    """One attempt of one delivery. Transient failures come back as arq Retry with our backoff.

    A delivery whose channel has all its send slots busy in this worker waits out of arq's job
    slots, without counting an attempt or an arq try (workers/channel_slots.py).
    At least once: a send whose outcome could not be recorded (storage away) may be sent again.
    """
    async with ctx["pool"].acquire() as conn:
        channel = await lifecycle.pending_channel(conn, uuid.UUID(delivery_id))
    if channel is None:
        return "final already"
    slots = ctx["channel_slots"]
    if not slots.take(channel, delivery_id):
        delay = slots.wait_delay(channel)
        await park(ctx["redis"], ctx["job_id"], delay)
        log.debug(
            "delivery waits %.1fs: %d sends busy on %s",
            delay,
            slots.busy(channel),
            channel,
            extra={"delivery_id": delivery_id, "channel": channel, "request_id": request_id},
        )
        raise Retry(defer=delay)
    try:
        return await _attempt(ctx, delivery_id, request_id)
    finally:
        waiter = slots.give_back(channel)
        if waiter is not None:
            await wake(ctx["redis"], ctx["settings"].queue_name, waiter)


async def _attempt(ctx: WorkerContext, delivery_id: str, request_id: str | None) -> str:
    settings = ctx["settings"]
    async with ctx["pool"].acquire() as conn:
        attempt = await lifecycle.start_attempt(conn, uuid.UUID(delivery_id), now=ctx["clock"].now())
    if attempt is None:
        return "final already"
    actions = channel_actions.links(
        settings.public_url,
        settings.secret_key,
        attempt.delivery_id,
        attempt.acting_user_id,
        attempt.kind,
        ctx["clock"].now(),
    )
    # Where Twilio tells what became of an SMS or a call (the other channels have no use for it).
    receipts = twilio.status_callback(settings.public_url, attempt.delivery_id)
    message = replace(
        attempt.message,
        actions=actions,
        status_callback=receipts,
        delivery_id=str(attempt.delivery_id),
        incident_url=incident_url(settings.public_url, attempt),
        recipient_id=str(attempt.acting_user_id or attempt.user_id),
        kind=attempt.kind,
    )
    attempt = replace(attempt, message=message)
    if attempt.channel == sms_codes.CHANNEL:
        async with ctx["pool"].acquire() as conn:
            reply = await sms_codes.assign(
                conn, attempt.delivery_id, attempt.target, ctx["clock"].now(), public_url=settings.public_url
            )
        if reply is not None:
            attempt = replace(attempt, message=replace(attempt.message, reply=reply))
    fields = {
        "alert_id": str(attempt.alert_id),
        "webhook_id": str(attempt.webhook_id),
        "delivery_id": delivery_id,
        "channel": attempt.channel,
        "target": mask_target(attempt.target),
        "attempt": attempt.number,
        "request_id": request_id,
    }
    if attempt.number > settings.max_attempts:
        # Only a worker dying mid-send gets here: the attempt cap still holds.
        return await _finish(ctx, attempt.delivery_id, DeliveryStatus.FAILED, fields, "attempts exhausted")
    channel = ctx["channels"].get(attempt.channel)
    if channel is None:
        error = f"{attempt.channel} is not configured on this server"
        return await _finish(ctx, attempt.delivery_id, DeliveryStatus.FAILED, fields, error)
    started = time.perf_counter()
    try:
        receipt = await _send(channel, attempt, fields)
    except DeliveryError as exc:
        fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        if exc.permanent or attempt.number >= settings.max_attempts:
            return await _finish(ctx, attempt.delivery_id, DeliveryStatus.FAILED, fields, str(exc))
        delay = retry.next_delay(attempt.number, exc.retry_after, base=settings.retry_base_delay)
        async with ctx["pool"].acquire() as conn:
            await lifecycle.schedule_retry(
                conn, attempt.delivery_id, str(exc), delay, maybe_sent=exc.maybe_sent
            )
        _count(ctx, fields, "retry")
        log.info(
            "delivery retry in %.1fs: %s", delay, mask_text(str(exc)), extra={**fields, "outcome": "retry"}
        )
        raise Retry(defer=delay) from None
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return await _finish(ctx, attempt.delivery_id, DeliveryStatus.DELIVERED, fields, None, receipt)


def incident_url(public_url: str | None, attempt: lifecycle.Attempt) -> str | None:
    """The dashboard page of the attempt's incident (api/dashboard/incidents.py), or of the list
    of incidents for a bundle or a plain alert; None without a public URL."""
    if public_url is None:
        return None
    base = public_url.rstrip("/")
    return f"{base}/incidents/{attempt.incident_id}" if attempt.incident_id else f"{base}/"


async def _send(channel: Channel, attempt: lifecycle.Attempt, fields: dict[str, Any]) -> Receipt:
    """The channel's send; an exception a channel should not raise (a bug) counts as transient, so
    the attempt cap still ends the delivery instead of leaving it pending for ever."""
    try:
        return await channel.send(attempt.message, attempt.target)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("the %s channel failed unexpectedly", attempt.channel, extra=fields)
        raise DeliveryError(
            f"unexpected error in the {attempt.channel} channel ({type(exc).__name__})", permanent=False
        ) from exc


async def _finish(
    ctx: WorkerContext,
    delivery_id: uuid.UUID,
    status: DeliveryStatus,
    fields: dict[str, Any],
    error: str | None,
    receipt: Receipt | None = None,
) -> str:
    receipt = receipt or Receipt()
    async with ctx["pool"].acquire() as conn:
        finished = await lifecycle.finish_delivery(
            conn,
            delivery_id,
            status,
            error=error,
            provider_id=receipt.provider_id,
            reply=receipt.reply,
            now=ctx["clock"].now(),
        )
    # A page that reached nobody may have ended its step: the sweep runs the next one now.
    await escalation.enqueue_wake_ups(ctx["redis"], ctx["clock"], finished.wake_ups)
    final = finished.alert
    _count(ctx, fields, status.value)
    log.info(
        "delivery %s%s",
        status.value,
        f": {mask_text(error)}" if error else "",
        extra={**fields, "outcome": status.value},
    )
    if final is not None:
        ctx["metrics"].inc(metrics.ALERTS_FINISHED, final["status"])
        alert_fields = {k: fields[k] for k in ("alert_id", "webhook_id", "request_id")}
        log.info("alert %s", final["status"], extra={**alert_fields, "outcome": final["status"]})
    return status.value


def _count(ctx: WorkerContext, fields: dict[str, Any], outcome: str) -> None:
    """One attempt for /metrics: its outcome and, when the provider was asked, how long it took."""
    ctx["metrics"].inc(metrics.DELIVERIES, fields["channel"], outcome)
    if "latency_ms" in fields:
        ctx["metrics"].observe(metrics.DELIVERY_LATENCY, fields["latency_ms"] / 1000, fields["channel"])
