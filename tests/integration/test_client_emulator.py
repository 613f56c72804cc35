"""MXOClient against the built-in emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Unpack

import attrs
import pytest

import mxo_async as mxo
from mxo_async import Activity, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from tests.fakes import ClientOptions


def client_for(emu: Emulator, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    return mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **kwargs)


def offer_codes(structure: mxo.Structure[dict[str, mxo.JSON]]) -> set[str]:
    """The codes of a customer profile's offers (a list of objects under ``offers``)."""
    offers = structure.attributes["offers"]
    assert isinstance(offers, list)
    codes: set[str] = set()
    for offer in offers:
        assert isinstance(offer, dict)
        code = offer["code"]
        assert isinstance(code, str)
        codes.add(code)
    return codes


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(), port=0) as running:
        yield running


@attrs.frozen
class Offer:
    code: str


@attrs.frozen
class Profile:
    tier: str
    activityCount: int
    offers: list[Offer]


async def test_three_calls_round_trip(emu: Emulator) -> None:
    """Send, read a structure and erase one customer; the emulator applied exactly that."""
    alice = Customer.by_key("alice@example.com")
    async with client_for(emu) as client:
        result = await client.send_activity(
            alice,
            "atm://atm",
            [Activity("atm", "balance_inquiry", "atm-12345")],
            {"campaign": "summer"},
        )
        summary = await client.get_structure(alice, "web://bank.com", "activitySummary")
        erasure = await client.delete_customer(alice)
        again = await client.delete_customer(alice)
    assert result.tid is not None
    assert (result.tid,) == erasure.tids
    assert "activitySummary" == summary.name
    assert result.tid == summary.tid
    assert {"atm": {"balance_inquiry": 1}} == summary.attributes["propositions"]
    assert erasure.found
    assert not again.found
    assert [mxo.Identifier("customerkey", "alice@example.com")] == list(erasure.identifiers)
    assert [] == emu.applied_activities(key="alice@example.com")


async def test_structure_depends_on_context_properties(emu: Emulator) -> None:
    """Context properties reach the emulator and change the structure, as eligibility rules do."""
    bob = Customer.by_key("bob@example.com")
    async with client_for(emu) as client:
        plain = await client.get_structure(bob, "web://bank.com", "customerProfile")
        renewal = await client.get_structure(
            bob, "web://bank.com", "customerProfile", {"renewalDue": "true"}
        )
    assert {"renew10"} == offer_codes(renewal) - offer_codes(plain)


async def test_structure_into_an_attrs_class(emu: Emulator) -> None:
    """into= turns the structure into an attrs instance."""
    carol = Customer.by_key("carol@example.com")
    async with client_for(emu) as client:
        await client.send_activity(carol, "web://bank.com", [Activity("cards", "view")])
        profile = await client.get_structure(
            carol, "web://bank.com", "customerProfile", {"renewalDue": "true"}, into=Profile
        )
    assert 1 == profile.attributes.activityCount
    assert Offer("renew10") in profile.attributes.offers


async def test_unknown_structure_is_not_found(emu: Emulator) -> None:
    """An unpublished structure raises NotFoundError."""
    async with client_for(emu) as client:
        with pytest.raises(mxo.NotFoundError):
            await client.get_structure(Customer.by_key("x"), "web://bank.com", "noSuchStructure")


async def test_wrong_secret_is_an_authentication_error(emu: Emulator) -> None:
    """The emulator refuses bad credentials and the client raises AuthenticationError."""
    async with mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, "wrong") as client:
        with pytest.raises(mxo.AuthenticationError):
            await client.delete_customer(Customer.by_key("x"))
    assert 0 == emu.counters.delete_requests


async def test_thousand_calls_after_revocation_fetch_one_token(emu: Emulator) -> None:
    """1000 concurrent calls on a revoked token cause exactly one token request, and all succeed."""
    async with client_for(emu) as client:
        await client.send_activity(Customer.by_key("warmup"), "web://x", [Activity("p", "t")])
        emu.revoke_tokens()
        before = emu.counters.token_requests
        results = await asyncio.gather(
            *(
                client.send_activity(
                    Customer.by_key(f"user{n}"), "web://x", [Activity("p", "t", f"d{n}")]
                )
                for n in range(1000)
            )
        )
    assert 1000 == sum(r.tid is not None for r in results)
    assert 1 == emu.counters.token_requests - before
    assert 1001 == emu.counters.applied_activities


async def test_thousand_calls_at_expiry_fetch_one_token() -> None:
    """Tokens that expire under load are refreshed by one request, not one per caller."""
    # 3 s tokens: the 1,000 calls must finish before the new token's own soft window (2.4 s),
    # or a legitimate proactive refresh would add a token request on a loaded machine.
    async with Emulator(EmulatorConfig(token_ttl=3.0)) as emu:
        async with client_for(emu) as client:
            await client.delete_customer(Customer.by_key("warmup"))
            await asyncio.sleep(3.1)  # the token has expired on both sides
            await asyncio.gather(
                *(client.delete_customer(Customer.by_key(f"u{n}")) for n in range(1000))
            )
            assert 2 == emu.counters.token_requests
            assert 0 == emu.counters.unauthorized


async def test_retries_survive_a_503_storm() -> None:
    """Injected 503s with Retry-After are retried; each activity is applied exactly once."""
    faults = Faults(status_503=0.3, status_429=0.2, retry_after=0.01)
    async with Emulator(EmulatorConfig(faults=faults, seed=7)) as emu:
        async with client_for(
            emu, retry=mxo.RetryPolicy(max_attempts=12, backoff_base=0.005)
        ) as client:
            await asyncio.gather(
                *(
                    client.send_activity(
                        Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t", f"id-{n}")]
                    )
                    for n in range(200)
                )
            )
            assert client.stats.retries > 0
    codes = Counter(a["dynamicPropositionCode"] for a in emu.applied_activities())
    assert Counter(f"id-{n}" for n in range(200)) == codes


async def test_reset_after_apply_is_reported_ambiguous() -> None:
    """A connection reset after the emulator applied the activity raises AmbiguousDeliveryError."""
    async with Emulator(EmulatorConfig(faults=Faults(reset_after=1.0))) as emu:
        async with client_for(emu) as client:
            with pytest.raises(mxo.AmbiguousDeliveryError):
                await client.send_activity(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    assert 1 == emu.counters.applied_activities


async def test_reset_before_apply_is_retried_for_idempotent_calls() -> None:
    """Resets on an idempotent delete are retried until it succeeds."""
    async with Emulator(EmulatorConfig(faults=Faults(reset_before=0.5), seed=3)) as emu:
        async with client_for(
            emu, retry=mxo.RetryPolicy(max_attempts=10, backoff_base=0.001)
        ) as client:
            results = [await client.delete_customer(Customer.by_key(f"k{n}")) for n in range(20)]
    assert [False] * 20 == [r.found for r in results]


async def test_mxo_client_fixture_is_ready_to_use(
    mxo_client: mxo.MXOClient, mxo_emulator: Emulator
) -> None:
    """The pytest plugin's mxo_client talks to mxo_emulator."""
    await mxo_client.send_activity(Customer.by_key("fixture"), "web://x", [Activity("p", "t")])
    assert 1 == mxo_emulator.counters.applied_activities
