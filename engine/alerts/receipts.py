"""Receipts: what a provider says became of a message after it took it (DESIGN: "receipt").

A delivery's ``status`` says whether we handed the message over; its receipt says what happened
next, and only ever moves forward::

    accepted ──▶ sent ──▶ delivered      (the phone has the SMS; a person answered the call)
        │          └────▶ undelivered    (the carrier lost or refused it; nobody answered)
        └── either of those, straight away

``accepted`` is written when the provider takes the message (engine.alerts.lifecycle: its API
answered 2xx, the SMTP server 250 with its queue id); email and push end there, since neither
confirms more. Twilio then posts status callbacks for SMS and calls (api/twilio_status.py), read
here. A receipt that would not move the delivery forward (the same one twice, a late ``sent``
after ``delivered``, a second final word) changes nothing, so Twilio retrying or reordering its
callbacks, or anyone replaying one, is harmless. The webhook's counters never move on a receipt:
successful_calls and failed_calls count handovers, as the seed defines them.

An ``undelivered`` receipt of an escalation's page may end its step's wait (engine.oncall.unreached).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from engine import db
from engine.errors import NotFound
from engine.incidents.call_keys import is_machine
from engine.oncall import unreached
from engine.oncall.paging import WakeUp


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"  # the provider took it
    SENT = "sent"  # on its way: with the carrier, the phone ringing
    DELIVERED = "delivered"  # it reached the person: the SMS is on the phone, a person answered
    UNDELIVERED = "undelivered"  # it did not, and will not


# How far along each one is: a receipt is recorded only when it goes further. Both final words
# rank alike, so the first one stays.
RANK = {
    ReceiptStatus.ACCEPTED: 0,
    ReceiptStatus.SENT: 1,
    ReceiptStatus.DELIVERED: 2,
    ReceiptStatus.UNDELIVERED: 2,
}
_RANK_OF_ROW = (
    "CASE receipt_status " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in RANK.items()) + " ELSE -1 END"
)

# Twilio's MessageStatus values (outbound); "receiving" and "received" are of incoming texts.
MESSAGE_STATUSES = {
    "accepted": ReceiptStatus.ACCEPTED,
    "scheduled": ReceiptStatus.ACCEPTED,
    "queued": ReceiptStatus.ACCEPTED,
    "sending": ReceiptStatus.ACCEPTED,
    "sent": ReceiptStatus.SENT,
    "delivered": ReceiptStatus.DELIVERED,
    "read": ReceiptStatus.DELIVERED,
    "partially_delivered": ReceiptStatus.DELIVERED,
    "undelivered": ReceiptStatus.UNDELIVERED,
    "failed": ReceiptStatus.UNDELIVERED,
    "canceled": ReceiptStatus.UNDELIVERED,
}
# Twilio's CallStatus values; "completed" means answered (by a machine, when AnsweredBy says so).
CALL_STATUSES = {
    "queued": ReceiptStatus.ACCEPTED,
    "initiated": ReceiptStatus.ACCEPTED,
    "ringing": ReceiptStatus.SENT,
    "in-progress": ReceiptStatus.SENT,
    "completed": ReceiptStatus.DELIVERED,
    "busy": ReceiptStatus.UNDELIVERED,
    "no-answer": ReceiptStatus.UNDELIVERED,
    "failed": ReceiptStatus.UNDELIVERED,
    "canceled": ReceiptStatus.UNDELIVERED,
}
STATUSES = {"SMS": MESSAGE_STATUSES, "CALL": CALL_STATUSES}

DELIVERY = "SELECT channel, target, receipt_status FROM deliveries WHERE id = $1"
# Only forward, only for the message this delivery handed over (a receipt may come before the
# worker has written the sid: it is Twilio's, signed, for our delivery's URL, so it is kept).
# reached_at of a call is when it was answered: the callback comes when it ends.
RECORD = f"""
UPDATE deliveries SET receipt_status = $3, provider_status = $4, receipt_error = $5,
    call_seconds = $6::integer, answered_by = $7, receipt_at = now(), provider_id = coalesce(provider_id, $2),
    reached_at = CASE WHEN $3 = 'delivered' THEN now() - make_interval(secs => coalesce($6::integer, 0)) END
WHERE id = $1 AND channel = $8 AND status <> 'cancelled' AND (provider_id IS NULL OR provider_id = $2)
  AND {_RANK_OF_ROW} < $9
RETURNING id
"""


@dataclass(frozen=True)
class Report:
    """One status callback: which message (the provider's id for it) and what the provider says."""

    channel: str  # SMS or CALL (engine.channels.registry.CHANNEL_TYPES): which kind of message
    provider_id: str
    provider_status: str  # Twilio's MessageStatus or CallStatus, as it came
    error_code: str | None = None
    call_seconds: int | None = None
    answered_by: str | None = None

    @property
    def status(self) -> ReceiptStatus | None:
        """The receipt it amounts to; None for a word we do not know (it changes nothing)."""
        status = STATUSES.get(self.channel, {}).get(self.provider_status)
        if status is ReceiptStatus.DELIVERED and self.channel == "CALL" and is_machine(self.answered_by):
            return ReceiptStatus.UNDELIVERED  # a voicemail or fax took the call: nobody heard it
        return status


@dataclass(frozen=True)
class Recorded:
    """What a receipt did: whether it moved the delivery on, and the incidents whose step it ended
    early, with the wake-ups to queue once this has committed."""

    changed: bool
    moved_on: list[uuid.UUID] = field(default_factory=list)
    wake_ups: list[WakeUp] = field(default_factory=list)


async def record(conn: db.Connection, delivery_id: uuid.UUID, report: Report, now: datetime) -> Recorded:
    """Record ``report`` on the delivery if it moves it forward; NotFound for no such delivery."""
    status = report.status
    async with conn.transaction():
        delivery = await conn.fetchrow(DELIVERY, delivery_id)
        if delivery is None:
            raise NotFound("delivery not found", code="DELIVERY_NOT_FOUND")
        if status is None or delivery["channel"] != report.channel:
            return Recorded(False)
        # The incidents first (then the delivery), as a send locks them: see engine.oncall.unreached.
        locked = await unreached.lock(conn, delivery_id) if status is ReceiptStatus.UNDELIVERED else []
        changed = await conn.fetchval(
            RECORD,
            delivery_id,
            report.provider_id,
            status.value,
            report.provider_status,
            report.error_code,
            report.call_seconds,
            report.answered_by,
            report.channel,
            RANK[status],
        )
        if changed is None:
            return Recorded(False)
        if not locked:
            return Recorded(True)
        what = f"{delivery['channel']} to {delivery['target']}: {report.provider_status}"
        what += f" (error {report.error_code})" if report.error_code else ""
        if report.channel == "CALL" and is_machine(report.answered_by):
            what += f" by {report.answered_by}"
        moved_on, wake_ups = await unreached.move_on(conn, locked, now, what)
    return Recorded(True, moved_on, wake_ups)
