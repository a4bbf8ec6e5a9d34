"""What a person reads on a dashboard page fetched over HTTP: its words, and the error shown at a
form field."""

from __future__ import annotations

import re
from html import unescape


def text_of(html: str) -> str:
    """The page's words, tags dropped: what a person reads."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def field_error(html: str, field_id: str) -> str:
    """The error shown under the field ``field_id`` (its aria-describedby names it)."""
    match = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error"[^>]*>([^<]*)</p>', html)
    assert match, f"no error at {field_id}"
    assert re.search(rf'id="{re.escape(field_id)}"[^>]*aria-invalid="true"', html), field_id
    return unescape(match.group(1))
