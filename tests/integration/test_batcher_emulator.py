"""The batcher against the emulator: coalescing, exactly-once, per-customer order, clean close."""

from __future__ import annotations

import gc
from typing import Unpack

import pytest

import mxo_async as mxo
from mxo_async import Activity, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from tests.fakes import ClientOptions


def client_for(emu: Emulator, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    return mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **kwargs)


async def test_interleaved_activities_coalesce_exactly_once_in_order() -> None:
    """10 activities for each of 2,000 customers, interleaved, go out in ~2,000 requests, in order."""
    customers, per_customer = 2000, 10
    async with Emulator(EmulatorConfig()) as emu:
        async with client_for(emu) as client:
            # Room for everything: with less, waiting submits send the oldest buffers early.
            async with client.batcher(max_pending=customers * per_customer) as batcher:
                for i in range(per_customer):
                    for n in range(customers):
                        await batcher.submit(
                            Customer.by_key(f"c{n}"),
                            "web://shop",
                            Activity("shop", "view", f"c{n}-{i}"),
                        )
            report = await batcher.aclose()
        requests = emu.counters.activity_requests_applied
        assert customers * per_customer == emu.counters.applied_activities
        assert customers * per_customer / requests >= 7.5
        for n in range(0, customers, 97):
            codes = [a["dynamicPropositionCode"] for a in emu.applied_activities(key=f"c{n}")]
            assert [f"c{n}-{i}" for i in range(per_customer)] == codes
    assert customers * per_customer == report.delivered
    assert 0 == report.failed
    assert 0 == report.ambiguous
    assert requests == report.requests


async def test_submits_right_before_close_are_delivered(recwarn: pytest.WarningsRecorder) -> None:
    """aclose() delivers what was submitted just before it; every delivery is settled; no warnings."""
    async with Emulator(EmulatorConfig()) as emu:
        async with client_for(emu) as client:
            batcher = client.batcher(max_latency=60)
            deliveries = [
                await batcher.submit(
                    Customer.by_key(f"k{n % 7}"), "web://x", Activity("p", "t", f"d{n}")
                )
                for n in range(300)
            ]
            report = await batcher.aclose()
            results = [await d for d in deliveries]
    gc.collect()
    assert 300 == report.delivered
    assert 300 == emu.counters.applied_activities
    assert 7 == report.requests
    assert all(d.done() for d in deliveries)
    assert all(r.tid for r in results)
    assert [] == [str(w.message) for w in recwarn]


async def test_failures_reach_the_report_and_dead_letter() -> None:
    """Resets after applying make deliveries ambiguous; on_error receives what finally failed."""
    dead: list[tuple[mxo.ActivityRequest, mxo.MXOError]] = []
    async with Emulator(EmulatorConfig(faults=Faults(reset_after=1.0))) as emu:
        async with client_for(emu) as client:
            async with client.batcher(on_error=lambda req, err: dead.append((req, err))) as batcher:
                delivery = await batcher.submit(Customer.by_key("k"), "web://x", Activity("p", "t"))
            report = batcher.stats
    with pytest.raises(mxo.AmbiguousDeliveryError):
        await delivery
    assert 1 == report.ambiguous
    assert 1 == len(dead)
    assert 1 == emu.counters.applied_activities
