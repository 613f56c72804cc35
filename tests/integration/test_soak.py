"""Soak: tens of thousands of requests under a few percent of mixed faults.

Every item is accounted for against the emulator's record, and the client's live objects stay flat
after a warm-up phase (a leak of one object per request would show up as thousands).
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import AsyncIterator

import pytest

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults

FAULTS = Faults(
    status_429=0.01, status_429_bare=0.005, status_500=0.005, status_503=0.01, html_error=0.005,
    reset_before=0.005, reset_after=0.005, malformed_json=0.005, retry_after=0.01,
)  # fmt: skip   # about 5% of requests
POLICY = mxo.RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_cap=0.01)
ITEMS = 20_000
CUSTOMERS, PER_CUSTOMER, CHUNK = 2_000, 10, 200  # batcher: 20,000 activities in chunks of customers
# Modules whose objects belong to the client side; the emulator's store grows by design.
CLIENT_MODULES = ("mxo_async", "aiohttp.client", "aiohttp.connector", "tenacity", "asyncio", "yarl")
GROWTH_SLACK = 200  # objects per type: pools, caches and in-flight work, never O(items)


def census() -> Counter[str]:
    """Live objects per client-side type."""
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = type(obj).__dict__.get("__module__")
        if (
            isinstance(module, str)
            and module.startswith(CLIENT_MODULES)
            and not module.startswith("mxo_async.emulator")
        ):
            counts[f"{module}.{type(obj).__qualname__}"] += 1
    return counts


def grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {
        name: after[name] - before[name]
        for name in after
        if after[name] - before[name] > GROWTH_SLACK
    }


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def stored(emu: Emulator, prefix: str) -> Counter[str]:
    return Counter(
        c
        for a in emu.applied_activities()
        if (c := str(a["dynamicPropositionCode"])).startswith(prefix)
    )


def kind(error: mxo.MXOError | None) -> str:
    """How an item ended, in the terms of the delivery rule."""
    if error is None:
        return "delivered"
    if isinstance(error, mxo.AmbiguousDeliveryError | mxo.ResponseFormatError):
        return "maybe-stored"
    return "not-stored"


def allowed(how: str) -> set[int]:
    return {"delivered": {1}, "maybe-stored": {0, 1}, "not-stored": {0}}[how]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(faults=FAULTS, seed=9)) as running:
        yield running


async def test_fan_out_soak_accounts_for_every_item_and_stays_flat(
    emu: Emulator, recwarn: pytest.WarningsRecorder
) -> None:
    """20,000 activities through send_activities under ~5% faults: all accounted for, no growth, no warnings."""
    requests = (
        ActivityRequest(Customer.by_key(f"u{n}"), "web://x", [Activity("p", "t", f"f-{n}")])
        for n in range(ITEMS)
    )
    ends: dict[int, str] = {}
    async with mxo.MXOClient(
        emu.base_url, emu.site_key, emu.client_id, emu.client_secret, retry=POLICY
    ) as client:
        async with client.send_activities(requests, concurrency=32) as outcomes:
            async for outcome in outcomes:
                ends[outcome.index] = kind(outcome.error)
                if len(ends) == 2_000:
                    warm, warm_rss = census(), rss()
        end, end_rss = census(), rss()
        stats = client.stats
    codes = stored(emu, "f-")
    tally = Counter(ends.values())
    assert list(range(ITEMS)) == sorted(ends)
    assert [] == [n for n, how in ends.items() if codes[f"f-{n}"] not in allowed(how)]
    assert set(codes) <= {f"f-{n}" for n in range(ITEMS)}
    assert 1 == max(codes.values())
    assert emu.counters.applied_activities == tally["delivered"] + sum(
        codes[f"f-{n}"] for n, how in ends.items() if how == "maybe-stored"
    )
    assert tally["delivered"] > 0.95 * ITEMS
    assert stats.retries > 0.02 * ITEMS  # the faults really fired
    assert {} == grown(warm, end)
    assert (
        end_rss - warm_rss < 64 * 2**20
    )  # the emulator keeps every activity; the client keeps none
    gc.collect()
    assert [] == [str(w.message) for w in recwarn]


async def test_batcher_soak_accounts_for_every_activity_and_stays_flat(
    emu: Emulator, recwarn: pytest.WarningsRecorder
) -> None:
    """20,000 activities through the batcher under ~5% faults: report and emulator agree, no growth, no warnings."""
    ends: dict[str, str] = {}
    reports: list[mxo.BatchReport] = []
    async with mxo.MXOClient(
        emu.base_url, emu.site_key, emu.client_id, emu.client_secret, retry=POLICY
    ) as client:
        async with client.batcher(max_latency=0.05) as batcher:
            for first in range(0, CUSTOMERS, CHUNK):
                deliveries = []
                for i in range(PER_CUSTOMER):
                    for n in range(first, first + CHUNK):
                        code = f"b-{n}-{i}"
                        deliveries.append(
                            (
                                code,
                                await batcher.submit(
                                    Customer.by_key(f"c{n}"), "web://x", Activity("p", "t", code)
                                ),
                            )
                        )
                await batcher.flush()
                ends.update((code, kind(d.exception())) for code, d in deliveries)
                del deliveries
                if first == CHUNK:  # after a warm-up of two chunks
                    warm, warm_rss = census(), rss()
            reports.append(await batcher.aclose())
            end, end_rss = census(), rss()
    report = reports[0]
    codes = stored(emu, "b-")
    tally = Counter(ends.values())
    assert CUSTOMERS * PER_CUSTOMER == len(ends) == report.submitted
    assert tally["delivered"] == report.delivered
    assert tally["not-stored"] == report.failed
    assert tally["maybe-stored"] == report.ambiguous
    assert [] == [code for code, how in ends.items() if codes[code] not in allowed(how)]
    assert set(codes) <= set(ends)
    assert 1 == max(codes.values())
    assert report.requests < len(ends) / 5  # coalesced
    assert {} == grown(warm, end)
    assert end_rss - warm_rss < 64 * 2**20
    gc.collect()
    assert [] == [str(w.message) for w in recwarn]
