"""A webhook's call counters, exact at every read, without one row lock per finished alert.

The counters live on the webhook's row (``total_calls``, ``successful_calls``, ``failed_calls``,
``pending_calls``, with their CHECK that they add up). ``record_alert`` counts a call under the
webhook's row lock, which it holds for the whole store of the alert (dedup and incidents are
serialised by it). A finished alert moving ``pending`` to ``successful``/``failed`` on that row
waited for every alert being stored on the webhook: in a burst on one webhook, the deliveries
queued on the lock. So a finished alert writes one row of ``webhook_call_outcomes`` (no lock on
the webhook), and the next call counted on the webhook moves those rows into the counters in the
same statement (``COUNT_CALL``), under the lock it holds anyway.

Reads add what has not been moved yet, in one statement (``COLUMNS``): one snapshot sees either
the outcomes or the counters they were moved into, never both or neither, so
``total = successful + failed + pending`` holds at every read.
"""

from __future__ import annotations

# $1 the webhook, $2 when the call was received.
COUNT_CALL = """
WITH moved AS (DELETE FROM webhook_call_outcomes WHERE webhook_id = $1 RETURNING successful)
UPDATE webhooks SET total_calls = total_calls + 1,
    pending_calls = pending_calls + 1 - (SELECT count(*) FROM moved),
    successful_calls = successful_calls + (SELECT count(*) FROM moved WHERE successful),
    failed_calls = failed_calls + (SELECT count(*) FROM moved WHERE NOT successful),
    last_call_at = greatest(last_call_at, $2)
WHERE id = $1
"""
# $1 the alert, $2 its webhook, $3 its final status (engine.alerts.lifecycle.AlertStatus).
COUNT_OUTCOME = """
INSERT INTO webhook_call_outcomes (alert_id, webhook_id, successful) VALUES ($1, $2, $3 = 'successful')
"""
# The same for the alerts a statement finalised: ``final`` names its rows (id, status, is_test,
# webhook_id), e.g. a CTE's (engine.alerts.lifecycle.FINISH_AND_FINALISE).
COUNT_OUTCOME_OF = """
INSERT INTO webhook_call_outcomes (alert_id, webhook_id, successful)
SELECT id, webhook_id, status = 'successful' FROM {final} WHERE NOT is_test
"""

_LEFT = "(SELECT count(*) FROM webhook_call_outcomes o WHERE o.webhook_id = webhooks.id{where})"
# The four counters of a webhooks row, exact (the table named ``webhooks`` in the query).
COLUMNS = (
    "webhooks.total_calls, "
    f"webhooks.successful_calls + {_LEFT.format(where=' AND o.successful')} AS successful_calls, "
    f"webhooks.failed_calls + {_LEFT.format(where=' AND NOT o.successful')} AS failed_calls, "
    f"webhooks.pending_calls - {_LEFT.format(where='')} AS pending_calls"
)
