"""A refused payload, told to the owner: "alerts refused: payload too large from <sender>".

A sender whose body is over MONODUTY_INBOUND_BODY_LIMIT gets its 413, and most never retry one
(Alertmanager treats it as final): the alerts it carried are lost. So that a human learns of it,
the refusal also becomes an alert of Monoduty's own, queued like any inbound one (no body kept,
only who sent how much), in the webhook's one open "payload too large" incident: the first refusal
opens and pages it, later ones join it (its count). Only a known webhook URL gets this far.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from engine.alerts.payloads import ParsedAlert
from engine.incidents.noise import REFUSED_KEY, SYSTEM_FORMAT

_PRODUCT = re.compile(r"[A-Za-z0-9._/+-]{1,60}")


def sender_of(headers: Mapping[str, str], client: str | None) -> str:
    """Who sent it, cheaply: the User-Agent's product (``Alertmanager/0.25.0``) and the address."""
    product = _PRODUCT.match(headers.get("User-Agent", "").strip())
    address = client or "an unknown address"
    return f"{product.group(0)} at {address}" if product else address


def refused_alert(sender: str, size: int | None, limit: int) -> ParsedAlert:
    """The alert a refused body becomes (``size``: its Content-Length, when it gave one)."""
    what = f"A request of {size:,} bytes" if size is not None else "A request"
    return ParsedAlert(
        title=f"alerts refused: payload too large from {sender}",
        message=(
            f"{what} from {sender} was refused with 413: it is over the inbound limit of {limit:,} bytes "
            "(MONODUTY_INBOUND_BODY_LIMIT). Senders do not retry a 413 (Alertmanager treats it as "
            "final), so the alerts it carried are lost. Send smaller batches (Alertmanager: max_alerts "
            "on the receiver) or raise the limit."
        ),
        severity="error",
        source=sender,
        format=SYSTEM_FORMAT,
        fingerprint=REFUSED_KEY,
        resolved=False,
        details={"sender": sender, "size": size, "limit": limit},
    )
