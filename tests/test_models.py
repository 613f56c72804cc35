"""Domain types validate on construction and raise ValidationError naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from mxo_async import (
    Activity,
    ActivityRequest,
    Customer,
    Erasure,
    MXOError,
    Outcome,
    ValidationError,
    _models,
)
from mxo_async._models import MAX_DYNAMIC_PROPOSITION_LENGTH

A = Activity("atm", "balance_inquiry")


def test_customer_needs_tid_or_key() -> None:
    """A customer with neither identifier is rejected, naming the field."""
    with pytest.raises(ValidationError, match="customer") as info:
        Customer()
    assert "customer" == info.value.field


def test_validation_error_is_a_value_error() -> None:
    """ValidationError is both an MXOError and a ValueError."""
    assert issubclass(ValidationError, MXOError)
    assert issubclass(ValidationError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"proposition": "", "activity_type": "t"}, "activity.proposition"),
        ({"proposition": "p", "activity_type": ""}, "activity.activity_type"),
        ({"proposition": "  ", "activity_type": "t"}, "activity.proposition"),
        (
            {"proposition": "p", "activity_type": "t", "dynamic_proposition": ""},
            "activity.dynamic_proposition",
        ),
        (
            {"proposition": "p", "activity_type": "t", "dynamic_proposition": "x" * 256},
            "activity.dynamic_proposition",
        ),
        ({"proposition": 5, "activity_type": "t"}, "activity.proposition"),
        (
            {"proposition": "p", "activity_type": "t", "timestamp": datetime(2020, 1, 1)},
            "activity.timestamp",
        ),
        (
            {
                "proposition": "p",
                "activity_type": "t",
                "timestamp": datetime.now(UTC) + timedelta(days=1),
            },
            "activity.timestamp",
        ),
        (
            {"proposition": "p", "activity_type": "t", "timestamp": "2020-01-01"},
            "activity.timestamp",
        ),
    ],
)
def test_bad_activities_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Each bad activity field raises ValidationError with that field's name."""
    with pytest.raises(ValidationError) as info:
        Activity(**kwargs)  # type: ignore[arg-type]  # any value, on purpose: validation is tested
    assert field == info.value.field
    assert field in str(info.value)


def test_dynamic_proposition_of_255_characters_is_accepted() -> None:
    """255 characters is the documented maximum, inclusive."""
    assert 255 == len(Activity("p", "t", "x" * 255).dynamic_proposition or "")


def test_historical_aware_timestamp_is_accepted() -> None:
    """Historical dates are allowed when timezone-aware."""
    moment = datetime(2018, 6, 2, 23, 6, 19, tzinfo=UTC)
    assert moment == Activity("p", "t", timestamp=moment).timestamp


def test_small_clock_skew_is_tolerated() -> None:
    """A timestamp two seconds ahead is clock drift between hosts, not a future event."""
    moment = datetime.now(UTC) + timedelta(seconds=2)
    assert moment == Activity("p", "t", timestamp=moment).timestamp


def test_a_timestamp_a_minute_ahead_is_refused() -> None:
    """MXO refuses future dates: a minute ahead is a ValidationError before any request."""
    with pytest.raises(ValidationError) as caught:
        Activity("p", "t", timestamp=datetime.now(UTC) + timedelta(minutes=1))
    assert "activity.timestamp" == caught.value.field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"touchpoint": "bank.com", "activities": [A]}, "touchpoint"),
        ({"touchpoint": "", "activities": [A]}, "touchpoint"),
        ({"touchpoint": "web://x", "activities": []}, "activities"),
        ({"touchpoint": "web://x", "activities": [A] * 101}, "activities"),
        ({"touchpoint": "web://x", "activities": ["atm"]}, "activities[0]"),
        ({"touchpoint": "web://x", "activities": "atm"}, "activities"),
        (
            {"touchpoint": "web://x", "activities": [A], "properties": {"k": {"nested": "v"}}},
            "properties['k']",
        ),
        (
            {"touchpoint": "web://x", "activities": [A], "properties": {"k": ["v"]}},
            "properties['k']",
        ),
        ({"touchpoint": "web://x", "activities": [A], "properties": {"k": 1}}, "properties['k']"),
        ({"touchpoint": "web://x", "activities": [A], "properties": {"": "v"}}, "properties"),
        ({"touchpoint": "web://x", "activities": [A], "properties": [("k", "v")]}, "properties"),
    ],
)
def test_bad_activity_requests_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Each bad request field raises ValidationError with that field's name."""
    with pytest.raises(ValidationError) as info:
        # any value, on purpose: validation is tested
        ActivityRequest(Customer.by_key("k"), **kwargs)  # type: ignore[arg-type]
    assert field == info.value.field


def test_one_hundred_activities_are_accepted() -> None:
    """100 activities is the assumed per-request maximum, inclusive."""
    assert 100 == len(ActivityRequest(Customer.by_key("k"), "web://x", [A] * 100).activities)


def test_activities_are_stored_as_a_tuple() -> None:
    """A list of activities is frozen into a tuple, so the request is immutable."""
    request = ActivityRequest(Customer.by_key("k"), "web://x", [A])
    assert (A,) == request.activities


def test_models_are_frozen() -> None:
    """Models cannot be mutated after construction."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        A.proposition = "other"  # type: ignore[misc]  # the write is the point: it must be refused


def test_customer_key_is_masked_in_repr() -> None:
    """A customer key (often an e-mail address) never shows in full in a repr."""
    assert "alice@example.com" not in repr(Customer.by_key("alice@example.com"))


def test_customer_masked_keeps_the_tid() -> None:
    """masked() keeps TIDs (pseudonyms) and hides keys."""
    assert "tid=t1 key='a***m'" == Customer(tid="t1", key="alice@example.com").masked()


def test_outcome_ok_reflects_error() -> None:
    """Outcome.ok is True exactly when there is no error."""
    good = Outcome("item", Erasure(), None, 1, 0)
    bad: Outcome[str, Erasure] = Outcome("item", None, MXOError("x"), 3, 1)
    assert good.ok
    assert not bad.ok


def test_remembered_codes_still_respect_every_field_limit() -> None:
    """A long proposition code, once valid and seen, is still too long as a dynamic proposition."""
    long_code = "p" * (MAX_DYNAMIC_PROPOSITION_LENGTH + 1)
    Activity(long_code, "click")
    Activity(long_code, "click")
    with pytest.raises(ValidationError, match="at most 255"):
        Activity("p", "click", dynamic_proposition=long_code)


def test_invalid_codes_are_never_remembered() -> None:
    for _ in range(2):
        with pytest.raises(ValidationError, match="whitespace"):
            Activity(" padded", "click")


def test_the_code_memory_is_bounded_and_skips_tids() -> None:
    for i in range(_models._MAX_KNOWN_CODES + 100):
        Activity("bounded", "click", dynamic_proposition=f"offer-{i}")
    assert len(_models._KNOWN_CODES) <= _models._MAX_KNOWN_CODES
    Customer.by_tid("tid-never-remembered")
    assert "tid-never-remembered" not in _models._KNOWN_CODES
