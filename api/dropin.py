"""What the drop-in PagerDuty and Opsgenie APIs share: their errors leave in the vendor's shape.

Their clients read their vendor's answers (pdpyras raises unless a 202 names ``dedup_key``; an
Opsgenie client logs ``message``), so a refusal from the one accept path (engine.alerts.inbound:
unknown token, rate limit, paused, body limits, storage away) is rendered by the route's own
``Render`` instead of the seed's error format. Status codes and ``Retry-After`` stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from api.middlewares import STORAGE_RETRY_AFTER, route_name
from engine.errors import STORAGE_DOWN, MonodutyError, Unavailable

log = logging.getLogger("monoduty.api")

Handler = Callable[[web.Request], Awaitable[web.Response]]
# (request, the refusal, headers to send) -> the answer in the vendor's shape
Render = Callable[[web.Request, MonodutyError, dict[str, str]], web.Response]


def vendor_errors(render: Render) -> Callable[[Handler], Handler]:
    """Wrap a handler so that every refusal it meets is answered by ``render``."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except MonodutyError as exc:
                return render(request, exc, dict(getattr(exc, "headers", None) or {}))
            except STORAGE_DOWN as exc:
                log.warning("storage unreachable on %s: %s", route_name(request), type(exc).__name__)
                down = Unavailable("temporarily unavailable: a storage service is unreachable; retry shortly")
                return render(request, down, {"Retry-After": str(STORAGE_RETRY_AFTER)})

        return wrapped

    return wrap
