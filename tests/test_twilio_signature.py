"""X-Twilio-Signature: Twilio's own documented example signs as it says, and any change refuses."""

from __future__ import annotations

from engine.channels import twilio_signature

# Twilio's security documentation: this token, URL and these parameters give this signature.
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
DOCUMENTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_the_documented_example_verifies_and_any_change_does_not() -> None:
    assert twilio_signature.signature(TOKEN, URL, reversed(PARAMS)) == DOCUMENTED
    assert twilio_signature.is_valid(TOKEN, URL, PARAMS, DOCUMENTED)
    assert not twilio_signature.is_valid("54321", URL, PARAMS, DOCUMENTED)
    assert not twilio_signature.is_valid(TOKEN, URL.replace("bar=2", "bar=3"), PARAMS, DOCUMENTED)
    assert not twilio_signature.is_valid(TOKEN, URL, [*PARAMS[:2], ("Digits", "4")], DOCUMENTED)
    assert not twilio_signature.is_valid(TOKEN, URL, PARAMS, None)
