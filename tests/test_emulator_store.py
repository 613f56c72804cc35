"""Unit tests of the emulator's pure parts: fault specs, catalogue, request reading and the store."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from mxo_async.emulator import Catalogue, EmulatorConfig, Faults
from mxo_async.emulator._faults import FaultDice, RateCap, format_retry_after
from mxo_async.emulator._requests import (
    INVALID_API_NAME,
    INVALID_DATE_TIME,
    BadRequest,
    RequestReader,
    format_timestamp,
    parse_timestamp,
)
from mxo_async.emulator._schema import compile_validators, is_date_time, is_uuid
from mxo_async.emulator._store import Store

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = "customerkey"


def make_store(seed: int = 0) -> Store:
    return Store(seed, lambda: NOW)


def reader(clock_skew: float = 5.0, attributes: frozenset[str] | None = None) -> RequestReader:
    return RequestReader(
        now=lambda: NOW, clock_skew=clock_skew, key_attribute=KEY, identifier_attributes=attributes
    )


def activity_body(timestamp: str, api_name: str = KEY) -> bytes:
    activity = {"propositionCode": "p", "activityTypeCode": "t", "timestamp": timestamp}
    context = {
        "identifiers": [{"apiName": api_name, "value": "k"}],
        "baseTouchpointUri": "web://x",
    }
    return orjson.dumps({"customerContext": context, "activities": [activity]})


# --- Faults -------------------------------------------------------------------------------


def test_parse_reads_short_keys_and_field_names() -> None:
    """A spec mixes status short forms and field names."""
    faults = Faults.parse("429=0.05,503=0.02,reset_before=0.01,latency=0.005,max_rate=200")
    expected = Faults(
        status_429=0.05, status_503=0.02, reset_before=0.01, latency=0.005, max_rate=200
    )
    assert faults == expected


def test_parse_of_empty_spec_is_no_faults() -> None:
    """An empty spec injects nothing."""
    assert Faults.parse("") == Faults()


def test_to_spec_round_trips() -> None:
    """to_spec writes a spec that parse reads back to the same value."""
    faults = Faults(status_429_bare=0.1, token_503=0.2, retry_after=0.05, oversized_bytes=10)
    assert Faults.parse(faults.to_spec()) == faults


@pytest.mark.parametrize("spec", ["nope=1", "429", "429=lots", "latency=-1", "500=1.5"])
def test_parse_rejects_bad_specs(spec: str) -> None:
    """Unknown keys, missing values, non-numbers and out-of-range values raise ValueError."""
    with pytest.raises(ValueError):
        Faults.parse(spec)


def test_api_probabilities_must_not_exceed_one() -> None:
    """API fault probabilities are exclusive outcomes of one draw, so their sum is at most 1."""
    with pytest.raises(ValueError, match="sum to"):
        Faults(status_500=0.6, reset_after=0.6)


def test_dice_pick_each_kind_in_proportion() -> None:
    """Over many draws each kind is picked about as often as its probability says."""
    dice = FaultDice(seed=1)
    faults = Faults(status_500=0.25, reset_after=0.25)
    picks = [dice.api(faults) for _ in range(4000)]
    shares = [picks.count(kind) / 4000 for kind in ("status_500", "reset_after", None)]
    assert shares == pytest.approx([0.25, 0.25, 0.5], abs=0.04)


def test_rate_cap_admits_max_rate_per_second() -> None:
    """The cap admits max_rate requests within one second and more once it has passed."""
    cap = RateCap()
    admitted = [cap.admit(t, 2) for t in (0.0, 0.1, 0.2, 0.99, 1.0, 1.1)]
    assert admitted == [True, True, False, False, True, True]


@pytest.mark.parametrize(("seconds", "header"), [(1.0, "1"), (0.05, "0.05"), (120, "120")])
def test_retry_after_is_whole_seconds_when_integral(seconds: float, header: str) -> None:
    """Retry-After is an integer for whole seconds, a decimal for a fraction."""
    assert format_retry_after(seconds) == header


def test_reject_is_a_fault_spec_key() -> None:
    """``reject=0.1`` sets the per-activity reject probability and round-trips through to_spec."""
    faults = Faults.parse("reject=0.1,503=0.2")
    assert 0.1 == faults.reject
    assert faults == Faults.parse(faults.to_spec())


def test_reject_is_not_drawn_with_the_api_faults() -> None:
    """reject is drawn per activity, apart: it does not count toward the API faults' sum of 1."""
    assert 1.0 == Faults(status_500=1.0, reject=1.0).reject


def test_dice_reject_in_proportion() -> None:
    """The reject dice reject about the configured share of activities."""
    dice = FaultDice(seed=2)
    faults = Faults(reject=0.3)
    share = sum(dice.reject(faults) for _ in range(4000)) / 4000
    assert share == pytest.approx(0.3, abs=0.04)


def test_reject_draws_leave_the_request_draws_alone() -> None:
    """Drawing rejects does not change which API faults the same seed injects."""
    faults = Faults(status_500=0.5, reject=0.5)
    plain, busy = FaultDice(seed=3), FaultDice(seed=3)
    first = [plain.api(faults) for _ in range(20)]
    second = []
    for _ in range(20):
        busy.reject(faults)
        second.append(busy.api(faults))
    assert first == second


# --- catalogue and configuration --------------------------------------------------------------


def test_catalogue_reads_its_json_form() -> None:
    """A catalogue file lists propositions and activity types; a missing list accepts anything."""
    catalogue = Catalogue.from_json(b'{"propositions": ["atm", "web"], "activity_types": ["view"]}')
    assert Catalogue(propositions={"atm", "web"}, activity_types={"view"}) == catalogue


def test_catalogue_default_accepts_everything() -> None:
    """Every list of the default catalogue is None: nothing is checked."""
    assert Catalogue().propositions is None
    assert Catalogue().activity_types is None
    assert Catalogue().identifier_attributes is None


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b"not json",
        b'{"propositions": "atm"}',
        b'{"propositions": [1]}',
        b'{"propositions": [["atm"]]}',
        b'{"propositions": [""]}',
        b'{"proposition": ["atm"]}',
    ],
)
def test_catalogue_rejects_malformed_json(text: bytes) -> None:
    """Not an object, not lists of non-empty strings, or an unknown member: ValueError."""
    with pytest.raises(ValueError):
        Catalogue.from_json(text)


def test_catalogue_load_reads_a_file(tmp_path: Path) -> None:
    """Catalogue.load reads the JSON form from a file."""
    path = tmp_path / "catalogue.json"
    path.write_text('{"activity_types": ["view"]}')
    assert Catalogue(activity_types={"view"}) == Catalogue.load(path)


@pytest.mark.parametrize("name", ["", "customer key"])
def test_key_attribute_must_be_an_api_name(name: str) -> None:
    """The key attribute is a non-empty API name without spaces."""
    with pytest.raises(ValueError, match="key_attribute"):
        EmulatorConfig(key_attribute=name)


def test_config_defaults_accept_everything_and_may_delete() -> None:
    """By default the key attribute is customerkey, every code is known and deletes are allowed."""
    config = EmulatorConfig()
    assert "customerkey" == config.key_attribute
    assert Catalogue() == config.catalogue
    assert config.delete_permission
    assert 5.0 == config.clock_skew


# --- schema formats and request reading ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2018-06-02T23:06:19Z", True),
        ("2018-06-02T23:06:19.250Z", True),
        ("2017-08-24T19:57:34.479-04:00", True),
        ("2018-06-02t23:06:19z", True),
        ("2018-06-02 23:06:19Z", False),
        ("2018-06-02T23:06:19", False),
        ("2018-02-30T23:06:19Z", False),
        ("2018-06-02T24:00:00Z", False),
        ("2018-06-02", False),
    ],
)
def test_date_time_format_is_rfc_3339(text: str, valid: bool) -> None:
    """date-time takes RFC 3339: seconds, an optional fraction, Z or an offset, a real date."""
    assert valid == is_date_time(text)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("d290f1ee-6c54-4b01-90e6-d701748f0851", True),
        ("a00ad08f-e305-8f9c-9116-add167624b57", True),
        ("A00AD08F-E305-8F9C-9116-ADD167624B57", True),
        ("a00ad08fe3058f9c9116add167624b57", False),
        ("t-1", False),
        ("a00ad08f-e305-8f9c-9116-add167624b5g", False),
    ],
)
def test_uuid_format_takes_any_version_digit(text: str, valid: bool) -> None:
    """A TID is 8-4-4-4-12 hex digits; the version digit is not checked."""
    assert valid == is_uuid(text)


def test_future_timestamp_is_invalid_date_time() -> None:
    """A timestamp beyond the clock skew is refused with INVALID_DATE_TIME."""
    stamp = format_timestamp(NOW + timedelta(seconds=6))
    with pytest.raises(BadRequest) as caught:
        reader(clock_skew=5).activity(activity_body(stamp))
    assert INVALID_DATE_TIME == caught.value.code
    assert "$.activities[0].timestamp: future dates are not supported" == str(caught.value)


def test_timestamp_within_the_clock_skew_is_accepted() -> None:
    """A timestamp up to clock_skew seconds ahead of the server's clock is accepted."""
    stamp = format_timestamp(NOW + timedelta(seconds=5))
    _, activities = reader(clock_skew=5).activity(activity_body(stamp))
    assert [stamp] == [a["timestamp"] for a in activities]


def test_future_offset_timestamp_is_compared_in_utc() -> None:
    """An offset timestamp is compared as the instant it names (12:00-04:00 is 16:00Z)."""
    with pytest.raises(BadRequest):
        reader().activity(activity_body("2024-05-01T12:00:00-04:00"))


def test_malformed_timestamp_is_invalid_date_time() -> None:
    """A timestamp that is not RFC 3339 is refused with INVALID_DATE_TIME."""
    with pytest.raises(BadRequest) as caught:
        reader().activity(activity_body("2024-05-01 12:00:00Z"))
    assert INVALID_DATE_TIME == caught.value.code
    assert "$.activities[0].timestamp: must be a valid date-time" == str(caught.value)


def test_unknown_identifier_attribute_is_invalid_api_name() -> None:
    """With known identifier attributes configured, another apiName is INVALID_API_NAME."""
    with pytest.raises(BadRequest) as caught:
        reader(attributes=frozenset({"email"})).activity(
            activity_body("2024-01-01T00:00:00Z", "crm")
        )
    assert INVALID_API_NAME == caught.value.code


def test_key_attribute_is_always_a_known_identifier() -> None:
    """The key attribute needs no listing among the known identifier attributes."""
    context, _ = reader(attributes=frozenset({"email"})).activity(
        activity_body("2024-01-01T00:00:00Z")
    )
    assert ((KEY, "k"),) == context.identifiers


def test_schema_messages_do_not_echo_values() -> None:
    """A 400's message names the member and the rule, not the value sent (it may be personal)."""
    body = activity_body("2024-01-01T00:00:00Z").replace(b'"value":"k"', b'"value":12345')
    with pytest.raises(BadRequest) as caught:
        reader().activity(body)
    assert "$.customerContext.identifiers[0].value: must be of type string" == str(caught.value)


def test_missing_jsonschema_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without jsonschema, compiling the validators says which extra to install."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(ImportError, match=re.escape('pip install "mxo-async[emulator]"')):
        compile_validators.__wrapped__()


# --- timestamps -----------------------------------------------------------------------------


def test_timestamp_format_omits_zero_milliseconds() -> None:
    """Timestamps carry milliseconds only when they are not zero."""
    stamps = [format_timestamp(NOW), format_timestamp(NOW.replace(microsecond=250_000))]
    assert stamps == ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.250Z"]


def test_timestamp_parse_reads_offsets() -> None:
    """An RFC 3339 offset is kept: the parsed moment is the instant the text names."""
    assert NOW == parse_timestamp("2024-05-01T08:00:00-04:00")


# --- store ----------------------------------------------------------------------------------


def test_new_key_gets_a_fresh_lower_case_tid() -> None:
    """An unknown key creates a record with a fresh 8-4-4-4-12 hex TID."""
    _, tid = make_store().resolve(None, [(KEY, "alice")])
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", tid)


def test_key_is_found_again() -> None:
    """Resolving the same key twice yields the same record."""
    store = make_store()
    first, _ = store.resolve(None, [(KEY, "alice")])
    second, _ = store.resolve(None, [(KEY, "alice")])
    assert first is second


def test_unknown_tid_alone_is_kept() -> None:
    """An unknown TID alone creates a record with exactly that TID and no identifiers."""
    record, tid = make_store().resolve("t-1")
    assert "t-1" == tid
    assert ["t-1"] == record.tids
    assert {} == record.identifiers


def test_key_attaches_to_a_keyless_tid_record() -> None:
    """A new key sent with the TID of a keyless record becomes that record's key."""
    store = make_store()
    by_tid, _ = store.resolve("t-1")
    by_both, _ = store.resolve("t-1", [(KEY, "alice")])
    assert by_tid == by_both
    assert by_tid == store.find_key("alice")


def test_tid_of_another_customer_is_not_stolen() -> None:
    """A new key sent with another customer's TID gets its own record and TID."""
    store = make_store()
    bob, bob_tid = store.resolve(None, [(KEY, "bob")])
    alice, alice_tid = store.resolve(bob_tid, [(KEY, "alice")])
    assert alice is not bob
    assert alice_tid != bob_tid
    assert [bob_tid] == bob.tids


def test_identifiers_of_one_request_are_linked() -> None:
    """Several identifiers sent together belong to one record, found by any of them."""
    store = make_store()
    record, _ = store.resolve(None, [(KEY, "alice"), ("email", "a@example.com")])
    assert record == store.find(None, [("email", "a@example.com")])
    assert record == store.find_key("alice")


def test_a_later_identifier_is_linked_to_the_known_customer() -> None:
    """A new identifier sent with a known one is added to that customer's identifiers."""
    store = make_store()
    store.resolve(None, [(KEY, "alice")])
    record, _ = store.resolve(None, [("email", "a@example.com"), (KEY, "alice")])
    assert {KEY: "alice", "email": "a@example.com"} == record.identifiers


def test_records_are_never_merged() -> None:
    """An identifier held by another record stays with it; the first known identifier decides."""
    store = make_store()
    alice, _ = store.resolve(None, [(KEY, "alice")])
    bob, _ = store.resolve(None, [("email", "bob@example.com")])
    record, _ = store.resolve(None, [(KEY, "alice"), ("email", "bob@example.com")])
    assert alice == record
    assert {KEY: "alice"} == alice.identifiers
    assert {"email": "bob@example.com"} == bob.identifiers


def test_an_attribute_keeps_its_first_value() -> None:
    """A second value for an attribute the record already has is not linked to it."""
    store = make_store()
    store.resolve(None, [(KEY, "alice"), ("email", "a@example.com")])
    record, _ = store.resolve(None, [(KEY, "alice"), ("email", "other@example.com")])
    assert {KEY: "alice", "email": "a@example.com"} == record.identifiers
    assert store.find(None, [("email", "other@example.com")]) is None


def test_same_seed_same_tids() -> None:
    """Two stores with one seed generate the same TIDs."""
    assert make_store(5).new_tid() == make_store(5).new_tid()


def test_apply_and_delete_keep_the_log_in_order() -> None:
    """Stored activities are listed in store order, and a deleted customer's are gone."""
    store = make_store()
    alice, alice_tid = store.resolve(None, [(KEY, "alice")])
    bob, bob_tid = store.resolve(None, [(KEY, "bob")])
    for record, tid, code in (
        (alice, alice_tid, "a1"),
        (bob, bob_tid, "b1"),
        (alice, alice_tid, "a2"),
    ):
        store.apply(record, tid, "web://x", [{"propositionCode": code, "activityTypeCode": "t"}])
    before = [a["propositionCode"] for a in store.activities()]
    store.delete(alice)
    after = [a["propositionCode"] for a in store.activities()]
    assert ["a1", "b1", "a2"] == before
    assert ["b1"] == after
    assert store.find_key("alice") is None


def test_delete_forgets_every_identifier_and_tid() -> None:
    """After a delete none of the record's identifiers or TIDs finds anything."""
    store = make_store()
    record, tid = store.resolve(None, [(KEY, "alice"), ("email", "a@example.com")])
    store.delete(record)
    assert store.find_key("alice") is None
    assert store.find(None, [("email", "a@example.com")]) is None
    assert store.find(tid) is None
    assert 0 == len(store)


def test_logged_activity_names_the_key_of_the_key_attribute() -> None:
    """The log's customerKey is the value of the configured key attribute."""
    store = Store(0, lambda: NOW, key_attribute="email")
    record, tid = store.resolve(None, [("crm", "c-1"), ("email", "a@example.com")])
    store.apply(record, tid, "web://x", [{"propositionCode": "p", "activityTypeCode": "t"}])
    assert ["a@example.com"] == [a["customerKey"] for a in store.activities()]


def test_keep_activities_off_keeps_aggregates_only() -> None:
    """With keep_activities=False nothing is logged but counts still add up."""
    store = Store(0, lambda: NOW, keep_activities=False)
    record, tid = store.resolve(None, [(KEY, "alice")])
    applied = store.apply(
        record, tid, "web://x", [{"propositionCode": "p", "activityTypeCode": "t"}]
    )
    assert 1 == applied
    assert {"p": {"t": 1}} == record.counts
    assert [] == store.activities()


def test_config_repr_hides_the_client_secret() -> None:
    """The client secret never appears in the configuration's repr."""
    assert "s3cret-value" not in repr(EmulatorConfig(client_secret="s3cret-value"))
