"""Contract v2 failures at every entry point, counted on the emulator: rejected activities, the
404 rule and the 403 of a delete without permission.

Rows of docs/fault-matrix.md ("Contract answers").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async.emulator import Catalogue, Emulator, EmulatorConfig

# The emulator knows proposition "p"; "nope" is outside its catalogue and gets rejected.
CATALOGUE = Catalogue(propositions=["p"])
QUICK = mxo.RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.005)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=3, catalogue=CATALOGUE)) as running:
        yield running


def client_for(emu: Emulator, site_key: str | None = None) -> mxo.MXOClient:
    return mxo.MXOClient(
        emu.base_url,
        site_key or emu.site_key,
        emu.client_id,
        emu.client_secret,
        token_url=emu.token_url,
        retry=QUICK,
    )


def stored_codes(emu: Emulator) -> Counter[str]:
    return Counter(str(a["dynamicPropositionCode"]) for a in emu.applied_activities())


async def test_send_activity_reports_exactly_the_rejected_activities(emu: Emulator) -> None:
    """One request, one rejected activity: raised with its code, the other stored, one request."""
    async with client_for(emu) as client:
        with pytest.raises(mxo.RejectedActivitiesError) as caught:
            await client.send_activity(
                Customer.by_key("k"),
                "web://x",
                [Activity("p", "t", "kept"), Activity("nope", "t", "refused")],
            )
    assert [("INVALID_PROPOSITION_CODE", Activity("nope", "t", "refused"))] == [
        (error.code, error.activity) for error in caught.value.rejected
    ]
    assert Counter({"kept": 1}) == stored_codes(emu)
    assert 1 == emu.counters.activity_requests
    assert 1 == emu.counters.rejected_activities


async def test_fan_out_outcomes_of_rejected_requests_are_not_ok(emu: Emulator) -> None:
    """send_activities: exactly the requests holding a rejected activity are not ok."""
    requests = [
        ActivityRequest(
            Customer.by_key(f"c{n}"), "web://x", [Activity("nope" if n % 3 == 0 else "p", "t")]
        )
        for n in range(30)
    ]
    async with client_for(emu) as client:
        async with client.send_activities(requests, concurrency=8) as stream:
            failed = sorted([o.index async for o in stream if not o.ok])
    assert [n for n in range(30) if n % 3 == 0] == failed
    assert 20 == emu.counters.applied_activities
    assert 30 == emu.counters.activity_requests  # rejections are never retried


async def test_batcher_fails_only_the_rejected_deliveries(emu: Emulator) -> None:
    """Batcher: coalesced requests, exactly the rejected activities' deliveries fail; report agrees."""
    deliveries: list[tuple[int, mxo.Delivery]] = []
    dead: list[mxo.ActivityRequest] = []
    async with client_for(emu) as client:
        batcher = client.batcher(
            max_activities=10, max_latency=0.01, on_error=lambda request, _: dead.append(request)
        )
        for n in range(40):
            proposition = "nope" if n % 4 == 0 else "p"
            delivery = await batcher.submit(
                Customer.by_key(f"c{n % 5}"), "web://x", Activity(proposition, "t", f"item-{n}")
            )
            deliveries.append((n, delivery))
        report = await batcher.aclose()
    failed = sorted(n for n, d in deliveries if d.exception() is not None)
    assert [n for n in range(40) if n % 4 == 0] == failed
    assert {f"item-{n}" for n in range(40) if n % 4} == set(stored_codes(emu))
    assert 30 == report.delivered
    assert 10 == report.rejected
    assert 0 == report.failed
    assert 0 == report.ambiguous
    assert 10 == sum(len(request.activities) for request in dead)
    assert report.requests < 40  # they were coalesced


async def test_a_wrong_site_key_erases_nobody_and_says_so(emu: Emulator, tmp_path: Path) -> None:
    """A sweep against an unknown site key: every customer failed with INVALID_SITEKEY, none done."""
    for n in range(5):
        emu.add_customer(f"c{n}")
    journal = tmp_path / "erase.jsonl"
    customers = [Customer.by_key(f"c{n}") for n in range(5)]
    async with client_for(emu, site_key="ONE-TYPO-0000") as client:
        async with client.delete_customers(customers, journal=journal) as stream:
            errors = [o.error async for o in stream]
    assert all(isinstance(e, mxo.NotFoundError) and e.code == "INVALID_SITEKEY" for e in errors)
    assert 5 == len(errors)
    assert all(emu.customer(f"c{n}") is not None for n in range(5))
    summary = mxo.summarize_journal(journal)
    assert 5 == summary.failed


async def test_a_delete_without_permission_is_forbidden_once() -> None:
    """Credentials without delete permission: ForbiddenError after one request, nothing deleted."""
    config = EmulatorConfig(delete_permission=False)
    async with Emulator(config) as emu:
        emu.add_customer("k")
        async with client_for(emu) as client:
            with pytest.raises(mxo.ForbiddenError):
                await client.delete_customer(Customer.by_key("k"))
        assert 1 == emu.counters.delete_requests
        assert emu.customer("k") is not None


async def test_deleting_an_unknown_customer_is_found_false(emu: Emulator) -> None:
    """404 CUSTOMER_NOT_FOUND is the one 404 that means 'nothing left to delete'."""
    async with client_for(emu) as client:
        erasure = await client.delete_customer(Customer.by_key("never-seen"))
    assert mxo.Erasure((), (), False) == erasure


async def test_customers_linked_by_identifiers_are_erased_together(emu: Emulator) -> None:
    """Activities sent with a key and an email link them; deleting by the email erases both."""
    both = Customer(key="k-1", identifiers={"email": "a@example.com"})
    async with client_for(emu) as client:
        sent = await client.send_activity(both, "web://x", Activity("p", "t"))
        erasure = await client.delete_customer(Customer.by_identifier("email", "a@example.com"))
    assert (sent.tid,) == erasure.tids
    assert {mxo.Identifier("customerkey", "k-1"), mxo.Identifier("email", "a@example.com")} == set(
        erasure.identifiers
    )
    assert emu.customer("k-1") is None
