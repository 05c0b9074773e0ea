"""Errors by what the caller must do: every error class of syncflow is in syncflow/errors.py,
under SyncflowError, and the ones that mean "try again later" share RetryLaterError."""

from __future__ import annotations

import ast
from pathlib import Path

from syncflow import errors
from syncflow.errors import (
    BadAnswerError,
    BadInputError,
    LocksLostError,
    MalformedResponseError,
    NotAcknowledgedError,
    RateLimitedError,
    RetryLaterError,
    SchemaRegistryUnavailableError,
    SyncflowError,
    TransientSourceError,
    TransientTargetError,
    UnknownEntityError,
    UnusableAnswerError,
)

PACKAGE = Path(__file__).resolve().parents[2] / "syncflow"


def test_every_error_class_is_in_errors_py_under_the_root() -> None:
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and path.name != "errors.py":
                elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert elsewhere == []
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, SyncflowError), value


def test_what_is_worth_retrying_is_a_retry_later_error() -> None:
    for cls in (TransientTargetError, RateLimitedError, BadAnswerError, SchemaRegistryUnavailableError,
                TransientSourceError, MalformedResponseError, LocksLostError, NotAcknowledgedError):
        assert issubclass(cls, RetryLaterError), cls
    assert not issubclass(UnusableAnswerError, RetryLaterError) and not issubclass(BadInputError, RetryLaterError)
    assert RateLimitedError("slow down", retry_after=3.0).retry_after == 3.0
    assert TransientTargetError("503", 503).retry_after is None and TransientTargetError("503", 503).status == 503
    assert RetryLaterError("outage", retry_after=2.5).retry_after == 2.5
    assert NotAcknowledgedError([(None, "timed out")]).failures == [(None, "timed out")]


def test_categories_stay_as_documented() -> None:
    assert (TransientTargetError.category, RateLimitedError.category, BadAnswerError.category) == (
        "transient", "rate-limited", "bad-answer")
    assert (UnusableAnswerError.category, NotAcknowledgedError.category, LocksLostError.category) == (
        "unusable-answer", "transient", "transient")
    assert issubclass(UnknownEntityError, KeyError) and UnknownEntityError.category == "config"
