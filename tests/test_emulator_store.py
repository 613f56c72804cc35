"""Unit tests of the emulator's pure parts: fault specs, request validation and the store."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from mxo_async.emulator import Faults
from mxo_async.emulator._faults import FaultDice, RateCap, format_retry_after
from mxo_async.emulator._requests import BadRequest, format_timestamp, parse_timestamp
from mxo_async.emulator._store import Store

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_store(seed: int = 0) -> Store:
    return Store(seed, lambda: NOW)


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


# --- timestamps -----------------------------------------------------------------------------


def test_timestamp_format_omits_zero_milliseconds() -> None:
    """Timestamps carry milliseconds only when they are not zero."""
    stamps = [format_timestamp(NOW), format_timestamp(NOW.replace(microsecond=250_000))]
    assert stamps == ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.250Z"]


def test_timestamp_parse_requires_z() -> None:
    """A timestamp with a numeric offset is rejected."""
    with pytest.raises(BadRequest):
        parse_timestamp("2024-05-01T12:00:00+00:00")


# --- store ----------------------------------------------------------------------------------


def test_new_key_gets_a_fresh_lower_case_tid() -> None:
    """An unknown key creates a record with a fresh 8-4-4-4-12 hex TID."""
    _, tid = make_store().resolve("alice", None)
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", tid)


def test_key_is_found_again() -> None:
    """Resolving the same key twice yields the same record."""
    store = make_store()
    first, _ = store.resolve("alice", None)
    second, _ = store.resolve("alice", None)
    assert first is second


def test_unknown_tid_alone_is_kept() -> None:
    """An unknown TID alone creates a record with exactly that TID and no key."""
    record, tid = make_store().resolve(None, "t-1")
    assert (tid, record.tids, record.key) == ("t-1", ["t-1"], None)


def test_key_attaches_to_a_keyless_tid_record() -> None:
    """A new key sent with the TID of a keyless record becomes that record's key."""
    store = make_store()
    by_tid, _ = store.resolve(None, "t-1")
    by_both, _ = store.resolve("alice", "t-1")
    assert (by_both, store.find("alice", None)) == (by_tid, by_tid)


def test_tid_of_another_customer_is_not_stolen() -> None:
    """A new key sent with another customer's TID gets its own record and TID."""
    store = make_store()
    bob, bob_tid = store.resolve("bob", None)
    alice, alice_tid = store.resolve("alice", bob_tid)
    assert (alice is bob, alice_tid == bob_tid, bob.tids) == (False, False, [bob_tid])


def test_same_seed_same_tids() -> None:
    """Two stores with one seed generate the same TIDs."""
    assert make_store(5).new_tid() == make_store(5).new_tid()


def test_apply_and_delete_keep_the_log_in_order() -> None:
    """Applied activities are listed in apply order, and a deleted customer's are gone."""
    store = make_store()
    alice, alice_tid = store.resolve("alice", None)
    bob, bob_tid = store.resolve("bob", None)
    for record, tid, code in (
        (alice, alice_tid, "a1"),
        (bob, bob_tid, "b1"),
        (alice, alice_tid, "a2"),
    ):
        store.apply(record, tid, "web://x", [{"propositionCode": code, "activityTypeCode": "t"}])
    before = [a["propositionCode"] for a in store.activities()]
    store.delete(alice)
    after = [a["propositionCode"] for a in store.activities()]
    assert (before, after, store.find("alice", None)) == (["a1", "b1", "a2"], ["b1"], None)


def test_keep_activities_off_keeps_aggregates_only() -> None:
    """With keep_activities=False nothing is logged but counts still add up."""
    store = Store(0, lambda: NOW, keep_activities=False)
    record, tid = store.resolve("alice", None)
    applied = store.apply(
        record, tid, "web://x", [{"propositionCode": "p", "activityTypeCode": "t"}]
    )
    assert (applied, record.counts, store.activities()) == (1, {"p": {"t": 1}}, [])


def test_config_repr_hides_the_client_secret() -> None:
    """The client secret never appears in the configuration's repr."""
    from mxo_async.emulator import EmulatorConfig

    assert "s3cret-value" not in repr(EmulatorConfig(client_secret="s3cret-value"))
