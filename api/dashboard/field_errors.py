"""An engine's ValidationError as a form's: which field it is about, in the form's words.

The engine names a field by its Python path (``rotations[0].shift_length``, ``steps[1].targets``);
a form knows its fields by its own names and labels. ``at_field`` maps the first to the second by
the longest matching prefix and puts the field's label in place of the engine's name in the
message, so "rotations[0].shift_length must be a whole number" reads "Shift length must be ...".
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import ValidationError


def at_field(exc: ValidationError, fields: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """(the form field, the message); ``fields`` maps an engine path prefix to (form field, label).
    An error about no known field is the form's general one (field "")."""
    path = exc.field or ""
    for prefix in sorted(fields, key=len, reverse=True):
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            name, label = fields[prefix]
            message = exc.message
            if message.startswith(path):
                message = label + message[len(path) :]
            elif message.startswith(prefix):
                message = label + message[len(prefix) :]
            return name, message
    return "", exc.message


def number(raw: str) -> object:
    """A form's number as the engine's int or float; anything else as typed (the engine refuses
    it with its own message), empty as None."""
    text = raw.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
