"""Phone and e-mail formats, kept dependency-free and fast.

Phones: North American numbers (the US default region) become +1NXXNXXXXXX; numbers
written with a leading + (or 00) keep their country code and must have 8 to 15 digits.
Extensions ("x123", "ext. 123") are dropped; letters anywhere else make it invalid.
"""

from __future__ import annotations

import re

_EXTENSION = re.compile(r"\s*(?:;?\s*ext\.?|x|#)\s*\d{1,6}\s*$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[\d\s().+\-/]+$")
_NANP = re.compile(r"^[2-9]\d{2}[2-9]\d{6}$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
EMAIL = re.compile(
    r"^(?=.{3,254}$)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
SUPPORTED_PHONE_REGIONS = ("US",)


def to_e164(text: str, region: str = "US") -> str | None:
    """The E.164 form of a phone number as typed, or None when it is not one."""
    text = _EXTENSION.sub("", text.strip())
    if not text or not _PHONE_CHARS.match(text):
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    international = text.startswith("+")
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if international:
        if digits.startswith("1"):
            return "+" + digits if _NANP.match(digits[1:]) else None
        return "+" + digits if 8 <= len(digits) <= 15 and digits[0] != "0" else None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return "+1" + digits if _NANP.match(digits) else None


def is_e164(text: str) -> bool:
    return E164.match(text) is not None


def is_email(text: str) -> bool:
    return EMAIL.match(text) is not None
