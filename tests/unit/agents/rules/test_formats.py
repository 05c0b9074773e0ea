"""Phones, e-mails and dotted paths."""

from __future__ import annotations

import pytest

from syncflow.agents.rules.formats import is_e164, is_email, to_e164
from syncflow.agents.rules.paths import compile_path


@pytest.mark.parametrize(("typed", "e164"), [
    ("(512) 555-0142", "+15125550142"),
    ("512.555.0142", "+15125550142"),
    ("1-512-555-0142", "+15125550142"),
    ("+1 512 555 0142", "+15125550142"),
    ("512-555-0142 x204", "+15125550142"),
    ("512 555 0142 ext. 9", "+15125550142"),
    ("+44 20 7946 0958", "+442079460958"),
    ("0044 20 7946 0958", "+442079460958"),
])
def test_phone_to_e164(typed, e164):
    assert to_e164(typed) == e164
    assert is_e164(e164)


@pytest.mark.parametrize("typed", ["", "555-0142", "123-456-7890", "(512) 055-0142", "1-800-FLOWERS", "+0 123",
                                   "+1 123 555 0142", "5125550142999"])
def test_not_a_phone(typed):
    assert to_e164(typed) is None


@pytest.mark.parametrize(("text", "ok"), [
    ("ana.garcia@example.com", True), ("a+tag@sub.example.co.uk", True), ("ana at example.com", False),
    ("ana@", False), ("@example.com", False), ("ana@example", False), ("a..b@example.com", False),
    ("ana@exa_mple.com", False),
])
def test_email(text, ok):
    assert is_email(text) is ok


def test_paths():
    record = {"A": {"B": [{"T": "cell", "N": "1"}, {"T": "home", "N": "2"}]}, "C": "x"}
    assert compile_path("C")(record) == "x"
    assert compile_path("A.B[1].N")(record) == "2"
    assert compile_path("A.B[-1].N")(record) == "2"
    assert compile_path("A.B[T=HOME].N")(record) == "2"
    assert compile_path("A.B[5].N")(record) is None
    assert compile_path("A.X.Y")(record) is None
    assert compile_path("C.D")(record) is None
    for bad in ["", "A..B", "A[", "A[x y]"]:
        with pytest.raises(ValueError):
            compile_path(bad)
