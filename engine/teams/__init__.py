"""Teams: who may do what to a team's objects (webhooks, incidents; later schedules and policies).

    membership  the teams and members tables: personal teams, lookups, ``require_role``
    members     managing a team and its members (the rules below), adding people by email
    invites     one-time set-password links for people invited by email

Roles, weakest first: ``viewer`` reads, ``responder`` also acknowledges and resolves, ``admin``
configures everything and manages members, ``owner`` also deletes the team and makes owners. A
caller outside a team gets 404 for it and its objects (existence is not revealed); a member whose
role is too small gets 403 ``INSUFFICIENT_PERMISSIONS``. A team always keeps an owner, and every
user owns a personal team that cannot be deleted or lose them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's role; compare with ``at_least`` (the order is the declaration's)."""

    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank
