"""Masking delivery targets in reports: enough to recognise one, not enough to reuse it."""

from __future__ import annotations

DOTS = "\u2022\u2022\u2022"


def mask_target(target: str) -> str:
    """``+14155550123`` → ``+1415•••0123``, ``oncall@example.com`` → ``o•••@example.com``,
    ``prod-alerts`` → ``pr•••ts`` (a push topic is as good as a password to a subscriber)."""
    if "@" in target:
        local, _, domain = target.rpartition("@")
        return f"{local[:1]}{DOTS}@{domain}"
    if target.startswith("+") and len(target) > 9:
        return f"{target[:5]}{DOTS}{target[-4:]}"
    if len(target) > 6:
        return f"{target[:2]}{DOTS}{target[-2:]}"
    return DOTS
