"""The fault matrix: every injected fault x every entry point ends as the delivery rule prescribes.

Each case runs against a fresh emulator and counts on it what was applied, so "nothing lost, nothing
duplicated beyond what the policy allows" is checked on the server side, not only on the client's
word. The table lives in docs/fault-matrix.md.

- Single calls (send_activity, get_structure, delete_customer) under a *persistent* fault (every
  attempt faulted) and under a *transient* one (the fault heals as soon as a retry is scheduled).
- Bulk entry points (fan-out ``send_activities``, the batcher, the journaled erasure sweep) under a
  seeded partial fault rate, with every item's outcome checked against the emulator's record.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer, RetryPolicy, Timeouts
from mxo_async.emulator import Emulator, EmulatorConfig, Faults

RA = 0.01  # Retry-After sent by the emulator: small so the matrix runs fast
SHORT_READ = Timeouts(read=0.1)
SHORT_ATTEMPT = Timeouts(total=0.1)  # the default stall guard: the per-attempt limit
SINGLE = RetryPolicy(
    max_attempts=3, max_rate_limited_attempts=3, backoff_base=0.001, backoff_cap=0.005
)
BULK = RetryPolicy(
    max_attempts=8, max_rate_limited_attempts=8, backoff_base=0.001, backoff_cap=0.005
)
BOUNDED = Timeouts(deadline=1.0)
GUARD = 10.0  # seconds: a case that hangs fails instead of blocking the suite


@attrs.frozen
class Fault:
    """How to break things: emulator faults, client timeouts, or nothing listening."""

    faults: Faults = attrs.field(factory=Faults)
    timeouts: Timeouts | None = None
    api_down: bool = False  # nothing listens at base_url (the token URL works)
    token_down: bool = False  # nothing listens at token_url
    revoke: bool = False  # every token is revoked mid-run


PERSISTENT = {
    "429": Fault(Faults(status_429=1.0, retry_after=RA)),
    "429_bare": Fault(Faults(status_429_bare=1.0)),
    "500": Fault(Faults(status_500=1.0)),
    "502": Fault(Faults(status_502=1.0)),
    "503": Fault(Faults(status_503=1.0, retry_after=RA)),
    "504": Fault(Faults(status_504=1.0)),
    "html_error": Fault(Faults(html_error=1.0)),
    "reset_before": Fault(Faults(reset_before=1.0)),
    "reset_after": Fault(Faults(reset_after=1.0)),
    "read_timeout": Fault(Faults(latency=0.3), SHORT_READ),
    "attempt_timeout": Fault(Faults(latency=0.3), SHORT_ATTEMPT),
    "slow_body": Fault(Faults(slow_body=1.0, slow_body_delay=0.5, slow_body_chunks=2), SHORT_READ),
    "malformed_json": Fault(Faults(malformed_json=1.0)),
    "oversized": Fault(Faults(oversized=1.0, oversized_bytes=5_000_000)),
    "refused": Fault(api_down=True),
    # A short deadline: a regression that retried token failures per API call would hit it.
    "token_503": Fault(Faults(token_503=1.0, retry_after=RA), BOUNDED),
    "token_reset": Fault(Faults(token_reset=1.0), BOUNDED),
    "token_refused": Fault(token_down=True, timeouts=BOUNDED),
    "revoked": Fault(revoke=True),
}
TOKEN_FAULTS = frozenset({"token_503", "token_reset", "token_refused"})
# The server is slow to answer: the request may or may not have been applied when we gave up.
TIMEOUTS = frozenset({"read_timeout", "attempt_timeout"})

# Faults answered before the request is applied, and after it (the emulator's own split).
BEFORE_APPLY = frozenset({"500", "502", "504", "html_error", "reset_before"})
AFTER_APPLY = frozenset({"reset_after", "slow_body", "oversized"})


def dead_url() -> str:
    """A loopback URL with nothing listening (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client_for(
    emu: Emulator, fault: Fault, policy: RetryPolicy, on_event: mxo.EventHandler | None = None
) -> mxo.MXOClient:
    return mxo.MXOClient(
        dead_url() if fault.api_down else emu.base_url,
        emu.site_key,
        emu.client_id,
        emu.client_secret,
        token_url=dead_url() + "/one/oauth2token" if fault.token_down else emu.token_url,
        retry=policy,
        timeouts=fault.timeouts,
        on_event=on_event,
    )


async def settle(emu: Emulator, ready: Callable[[], bool]) -> None:
    """Let the emulator finish handlers the client gave up on (bounded, not a timed assertion)."""
    for _ in range(200):
        if ready():
            return
        await asyncio.sleep(0.01)


def idle(emu: Emulator) -> Callable[[], bool]:
    """True once the emulator has finished every API request it received."""
    return lambda: 0 == emu.in_flight


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=1)) as running:
        yield running


# -- single calls -------------------------------------------------------------------------------

SEND, STRUCTURE, DELETE = "send_activity", "get_structure", "delete_customer"
CALLS: dict[str, Callable[[mxo.MXOClient], Awaitable[object]]] = {
    SEND: lambda c: c.send_activity(Customer.by_key("k"), "web://x", [Activity("p", "t", "code")]),
    STRUCTURE: lambda c: c.get_structure(Customer.by_key("k"), "web://x", "customerProfile"),
    DELETE: lambda c: c.delete_customer(Customer.by_key("k")),
}

# (error type or None, attempts) under a persistent fault; send_activity first, then the idempotent calls.
PERSISTENT_SEND: dict[str, tuple[type[mxo.MXOError] | None, int]] = {
    "429": (mxo.RateLimitedError, 3),
    "429_bare": (mxo.RateLimitedError, 3),
    "503": (mxo.ServerError, 3),
    **dict.fromkeys(BEFORE_APPLY | AFTER_APPLY | TIMEOUTS, (mxo.AmbiguousDeliveryError, 1)),
    "malformed_json": (mxo.ResponseFormatError, 1),
    "refused": (mxo.TransportError, 3),
    "token_503": (mxo.ServerError, 0),
    "token_reset": (mxo.TransportError, 0),
    "token_refused": (mxo.TransportError, 0),
    "revoked": (None, 2),
}
PERSISTENT_IDEMPOTENT: dict[str, tuple[type[mxo.MXOError] | None, int]] = {
    "429": (mxo.RateLimitedError, 3),
    "429_bare": (mxo.RateLimitedError, 3),
    **dict.fromkeys({"500", "502", "503", "504", "html_error"}, (mxo.ServerError, 3)),
    **dict.fromkeys(
        {"reset_before", "reset_after", "oversized", "refused"}, (mxo.TransportError, 3)
    ),
    **dict.fromkeys(TIMEOUTS | {"slow_body"}, (mxo.TimeoutError, 3)),
    "malformed_json": (mxo.ResponseFormatError, 1),
    "token_503": (mxo.ServerError, 0),
    "token_reset": (mxo.TransportError, 0),
    "token_refused": (mxo.TransportError, 0),
    "revoked": (None, 2),
}
# How many times a persistently faulted send_activity is stored by the emulator.
SEND_APPLIED = {
    "reset_after": {1},
    "slow_body": {1},
    "oversized": {1},
    "malformed_json": {1},
    "read_timeout": {1},  # the emulator applies a request it has read, as a server would
    "attempt_timeout": {1},
    "revoked": {1},
}


async def run_single(
    emu: Emulator, fault: Fault, call: str, on_event: mxo.EventHandler | None = None
) -> tuple[object, mxo.ClientStats]:
    """Run one call under ``fault``; return its result (or the MXOError it raised) and the client's stats."""
    emu.add_customer("k")
    async with client_for(emu, fault, SINGLE, on_event) as client:
        if fault.revoke:
            await client.get_structure(Customer.by_key("warm-up"), "web://x", "customerProfile")
            emu.revoke_tokens()
        emu.faults = fault.faults
        try:
            async with asyncio.timeout(GUARD):
                return await CALLS[call](client), client.stats
        except mxo.MXOError as error:
            return error, client.stats
        finally:
            emu.faults = Faults()  # a hung-up latency handler must not delay the others
            await settle(emu, idle(emu))


def api_requests(emu: Emulator, call: str) -> int:
    counters = emu.counters
    return {
        SEND: counters.activity_requests,
        STRUCTURE: counters.structure_requests,
        DELETE: counters.delete_requests,
    }[call]


@pytest.mark.parametrize("call", [SEND, STRUCTURE, DELETE])
@pytest.mark.parametrize("name", list(PERSISTENT))
async def test_single_call_under_a_persistent_fault(emu: Emulator, name: str, call: str) -> None:
    """Every attempt faulted: the call ends with the error and attempt count the rule prescribes."""
    outcome, stats = await run_single(emu, PERSISTENT[name], call)
    expected_type, attempts = (PERSISTENT_SEND if call == SEND else PERSISTENT_IDEMPOTENT)[name]
    if expected_type is None:
        assert not isinstance(outcome, mxo.MXOError), outcome
    else:
        assert isinstance(outcome, expected_type), repr(outcome)
        assert not (
            call == SEND
            and name in TOKEN_FAULTS
            and isinstance(outcome, mxo.AmbiguousDeliveryError)
        )
        if not isinstance(
            outcome, mxo.ResponseFormatError
        ):  # see test_response_format_error_counts_its_attempt
            assert attempts == outcome.attempts
    requests = api_requests(emu, call) - (1 if fault_warms_up(name, call) else 0)
    if name in TOKEN_FAULTS:
        # Nothing reached the API, and only the token request's own attempts were made.
        assert 0 == requests
        assert SINGLE.max_attempts == stats.requests
    elif PERSISTENT[name].api_down:
        assert 0 == requests
    elif call == DELETE and name in {"reset_before", "reset_after"}:
        # aiohttp itself replays an idempotent DELETE once when a reused connection is reset.
        assert attempts <= requests <= 2 * attempts
    else:
        assert attempts == requests
    if call == SEND:
        await settle(emu, lambda: emu.counters.applied_activities in SEND_APPLIED.get(name, {0}))
        assert emu.counters.applied_activities in SEND_APPLIED.get(name, {0})
    if call == DELETE:
        applied = name in AFTER_APPLY | TIMEOUTS | {"reset_after", "malformed_json", "revoked"}
        await settle(emu, lambda: (emu.customer("k") is None) == applied)
        assert applied == (emu.customer("k") is None)  # erased exactly when the emulator applied it


def fault_warms_up(name: str, call: str) -> bool:
    """The revocation case makes one warm-up structure call first."""
    return name == "revoked" and call == STRUCTURE


def is_applied_send_fault(name: str) -> bool:
    return name in AFTER_APPLY | {"malformed_json"}


TRANSIENT = [n for n in PERSISTENT if n not in {"refused", "token_refused"}]


@pytest.mark.parametrize("call", [SEND, STRUCTURE, DELETE])
@pytest.mark.parametrize("name", TRANSIENT)
async def test_single_call_under_a_transient_fault(emu: Emulator, name: str, call: str) -> None:
    """The fault heals once a retry is scheduled: retried calls succeed; ambiguous sends are not replayed."""

    def heal(event: mxo.Event) -> None:
        if isinstance(event, mxo.RetryScheduled):
            emu.faults = Faults()

    outcome, _ = await run_single(emu, PERSISTENT[name], call, heal)
    if call == SEND and name in BEFORE_APPLY | AFTER_APPLY | TIMEOUTS:
        assert isinstance(outcome, mxo.AmbiguousDeliveryError), repr(outcome)
        assert 1 == emu.counters.activity_requests  # never replayed
    elif name == "malformed_json":
        assert isinstance(outcome, mxo.ResponseFormatError), repr(outcome)
    else:
        assert not isinstance(outcome, mxo.MXOError), repr(outcome)
    if call == SEND:
        expected = {1} if not isinstance(outcome, mxo.MXOError) else SEND_APPLIED.get(name, {0})
        assert emu.counters.applied_activities in expected  # stored at most once
    if call == DELETE:
        assert emu.customer("k") is None or isinstance(outcome, mxo.MXOError)
        if name in AFTER_APPLY | {"reset_after"}:
            # The first attempt erased the customer; the retry finds nothing left to delete.
            assert isinstance(outcome, mxo.Erasure)
            assert not outcome.found


@pytest.mark.parametrize("name", sorted(BEFORE_APPLY | AFTER_APPLY | TIMEOUTS))
async def test_at_least_once_send_replays_until_delivered(emu: Emulator, name: str) -> None:
    """With retry_ambiguous=True a transient fault is retried: delivered, stored once or twice."""
    policy = attrs.evolve(SINGLE, retry_ambiguous=True)

    def heal(event: mxo.Event) -> None:
        if isinstance(event, mxo.RetryScheduled):
            emu.faults = Faults()

    fault = PERSISTENT[name]
    async with client_for(emu, fault, policy, heal) as client:
        emu.faults = fault.faults
        result = await CALLS[SEND](client)
        await settle(emu, idle(emu))
    duplicates = {1, 2} if name in TIMEOUTS else ({2} if name in AFTER_APPLY else {1})
    assert isinstance(result, mxo.ActivityResult)
    assert emu.counters.applied_activities in duplicates


async def test_send_activity_is_never_replayed_by_aiohttp_on_a_reused_connection(
    emu: Emulator,
) -> None:
    """A POST reset on a kept-alive connection reaches the server once (aiohttp replays only idempotent methods)."""
    async with client_for(emu, Fault(), SINGLE) as client:
        await CALLS[SEND](client)
        emu.faults = Faults(reset_after=1.0)
        with pytest.raises(mxo.AmbiguousDeliveryError):
            await CALLS[SEND](client)
    assert 2 == emu.counters.activity_requests
    assert 2 == emu.counters.applied_activities


async def test_response_format_error_counts_its_attempt(emu: Emulator) -> None:
    """A malformed 200 was one HTTP attempt: the error says so."""
    outcome, _ = await run_single(emu, PERSISTENT["malformed_json"], SEND)
    assert isinstance(outcome, mxo.ResponseFormatError)
    assert 1 == outcome.attempts


# -- bulk entry points --------------------------------------------------------------------------

PARTIAL = {
    "429": Fault(Faults(status_429=0.3, retry_after=RA)),
    "429_bare": Fault(Faults(status_429_bare=0.3)),
    "500": Fault(Faults(status_500=0.3)),
    "502": Fault(Faults(status_502=0.3)),
    "503": Fault(Faults(status_503=0.3, retry_after=RA)),
    "504": Fault(Faults(status_504=0.3)),
    "html_error": Fault(Faults(html_error=0.3)),
    "reset_before": Fault(Faults(reset_before=0.3)),
    "reset_after": Fault(Faults(reset_after=0.3)),
    "read_timeout": Fault(Faults(latency=0.3), SHORT_READ),  # every request: few items
    "attempt_timeout": Fault(Faults(latency=0.3), SHORT_ATTEMPT),
    "slow_body": Fault(Faults(slow_body=0.2, slow_body_delay=0.5, slow_body_chunks=2), SHORT_READ),
    "malformed_json": Fault(Faults(malformed_json=0.2)),
    "oversized": Fault(Faults(oversized=0.2, oversized_bytes=5_000_000)),
    "refused": Fault(api_down=True),
    "token_503": PERSISTENT["token_503"],
    "token_reset": PERSISTENT["token_reset"],
    "token_refused": PERSISTENT["token_refused"],
    "revoked": Fault(revoke=True),
}
ALL_FAIL = frozenset({"refused"} | TIMEOUTS | TOKEN_FAULTS)
RETRIED_SENDS = frozenset({"429", "429_bare", "503", "revoked"})


def items(name: str) -> int:
    return 8 if name in ALL_FAIL else 40


def send_stored(name: str, error: mxo.MXOError | None) -> set[int]:
    """How many times the emulator may have stored an activity whose send ended with ``error``."""
    if error is None:
        return {1}  # delivered: exactly once (retry_ambiguous is off)
    if isinstance(error, mxo.ResponseFormatError):
        return {1}  # a 200 whose body was unreadable: stored
    if isinstance(error, mxo.AmbiguousDeliveryError):
        return {0} if name in BEFORE_APPLY else {1} if name in AFTER_APPLY else {0, 1}
    return {0}  # any other error: certainly not stored


def expected_send_errors(name: str) -> tuple[type[mxo.MXOError], ...]:
    if name in RETRIED_SENDS:
        return ()
    if name == "malformed_json":
        return (mxo.ResponseFormatError,)
    if name == "refused" or name in TOKEN_FAULTS:
        return (mxo.TransportError, mxo.ServerError)  # never ambiguous: nothing was sent
    return (mxo.AmbiguousDeliveryError,)


def stored_codes(emu: Emulator) -> Counter[str]:
    return Counter(str(a["dynamicPropositionCode"]) for a in emu.applied_activities())


def assert_token_outage_bounded(name: str, count: int, stats: mxo.ClientStats) -> None:
    """With the token endpoint down, the items (all started together) share one or two failed refreshes."""
    if name in TOKEN_FAULTS:
        assert 0 == sum(stats.statuses.get(s, 0) for s in (200, 401))  # no API answer at all
        # Each refresh makes its own attempts, and nothing retries it on top.
        assert stats.requests <= 2 * BULK.max_attempts


async def guarded(coro: Awaitable[None]) -> None:
    async with asyncio.timeout(GUARD):
        await coro


@pytest.mark.parametrize("name", list(PARTIAL))
async def test_fan_out_accounts_for_every_item(emu: Emulator, name: str) -> None:
    """send_activities: one outcome per item, each stored as often as its outcome allows, never twice."""
    fault, count = PARTIAL[name], items(name)
    reqs = [
        ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t", f"item-{n}")])
        for n in range(count)
    ]
    outcomes: list[mxo.Outcome[ActivityRequest, mxo.ActivityResult]] = []
    stats: list[mxo.ClientStats] = []

    async def run() -> None:
        async with client_for(emu, fault, BULK) as client:
            if fault.revoke:
                await client.get_structure(Customer.by_key("warm-up"), "web://x", "customerProfile")
            emu.faults = fault.faults
            async with client.send_activities(reqs, concurrency=8) as stream:
                async for outcome in stream:
                    outcomes.append(outcome)
                    if fault.revoke and len(outcomes) == 10:
                        emu.revoke_tokens()
            stats.append(client.stats)

    await guarded(run())
    emu.faults = Faults()
    await settle(emu, idle(emu))
    stored = stored_codes(emu)
    assert_token_outage_bounded(name, count, stats[0])
    assert list(range(count)) == sorted(o.index for o in outcomes)
    for o in outcomes:
        assert stored[f"item-{o.index}"] in send_stored(name, o.error), (
            o,
            stored[f"item-{o.index}"],
        )
        if o.error is not None:
            assert isinstance(o.error, expected_send_errors(name)), repr(o.error)
    errors = sum(o.error is not None for o in outcomes)
    assert (0 if name in RETRIED_SENDS else 1) <= errors
    assert set(stored) <= {f"item-{n}" for n in range(count)}
    assert max(stored.values(), default=1) <= 1
    if name in ALL_FAIL:
        assert count == errors
    if name == "revoked":
        assert 2 == emu.counters.tokens_issued  # one refresh for all the 401s


@pytest.mark.parametrize("name", list(PARTIAL))
async def test_batcher_accounts_for_every_activity(emu: Emulator, name: str) -> None:
    """Batcher: the report's delivered/failed/ambiguous match what the emulator stored, activity by activity."""
    fault, count = PARTIAL[name], items(name)
    deliveries: list[tuple[int, mxo.Delivery]] = []
    report: list[mxo.BatchReport] = []
    stats: list[mxo.ClientStats] = []

    async def run() -> None:
        async with client_for(emu, fault, BULK) as client:
            if fault.revoke:
                await client.get_structure(Customer.by_key("warm-up"), "web://x", "customerProfile")
            emu.faults = fault.faults
            batcher = client.batcher(max_activities=2, max_latency=0.005)
            for n in range(count):
                if fault.revoke and n == count // 2:
                    await batcher.flush()
                    emu.revoke_tokens()
                delivery = await batcher.submit(
                    Customer.by_key(f"c{n % 10}"), "web://x", Activity("p", "t", f"item-{n}")
                )
                deliveries.append((n, delivery))
            report.append(await batcher.aclose())
            stats.append(client.stats)

    await guarded(run())
    emu.faults = Faults()
    await settle(emu, idle(emu))
    stored = stored_codes(emu)
    assert_token_outage_bounded(name, count, stats[0])
    errors = {n: d.exception() for n, d in deliveries}
    for n, error in errors.items():
        assert stored[f"item-{n}"] in send_stored(name, error), (n, error, stored[f"item-{n}"])
        if error is not None:
            assert isinstance(error, expected_send_errors(name)), repr(error)
    maybe_stored = sum(
        isinstance(e, mxo.AmbiguousDeliveryError | mxo.ResponseFormatError) for e in errors.values()
    )
    certainly_not = sum(e is not None for e in errors.values()) - maybe_stored
    delivered = sum(e is None for e in errors.values())
    assert count == report[0].submitted
    assert delivered == report[0].delivered
    assert certainly_not == report[0].failed
    assert maybe_stored == report[0].ambiguous
    assert max(stored.values(), default=1) <= 1
    if name not in RETRIED_SENDS:
        assert delivered < count


@pytest.mark.parametrize("name", list(PARTIAL))
async def test_erasure_sweep_journals_every_customer_and_resumes_to_completion(
    emu: Emulator, name: str, tmp_path: Path
) -> None:
    """delete_customers with a journal: every customer journaled, done ones skipped, resume erases the rest."""
    fault, count = PARTIAL[name], items(name)
    keys = [f"user{n}@example.com" for n in range(count)]
    for key in keys:
        emu.add_customer(key)
    journal = tmp_path / "erase.jsonl"
    first: list[mxo.Outcome[Customer, mxo.Erasure]] = []
    stats: list[mxo.ClientStats] = []

    async def run() -> None:
        async with client_for(emu, fault, BULK) as client:
            if fault.revoke:
                await client.get_structure(Customer.by_key("warm-up"), "web://x", "customerProfile")
            emu.faults = fault.faults
            async with client.delete_customers(
                [Customer.by_key(k) for k in keys], concurrency=8, journal=journal
            ) as stream:
                async for outcome in stream:
                    first.append(outcome)
                    if fault.revoke and len(first) == 10:
                        emu.revoke_tokens()
            stats.append(client.stats)

    await guarded(run())
    emu.faults = Faults()
    await settle(emu, idle(emu))
    assert_token_outage_bounded(name, count, stats[0])
    assert count == len(journal.read_bytes().splitlines()) == len(first)
    failed = [o for o in first if o.error is not None]
    for o in first:
        if o.error is None:
            assert emu.customer(o.item.key) is None  # reported erased: really gone
        elif name not in AFTER_APPLY | TIMEOUTS | {"reset_after", "malformed_json"}:
            assert emu.customer(o.item.key) is not None  # reported failed: still there to retry
    if name in ALL_FAIL:
        assert count == len(failed)
    if name == "malformed_json":
        assert failed
        assert all(isinstance(o.error, mxo.ResponseFormatError) for o in failed)
    before = emu.counters.delete_requests
    async with client_for(emu, Fault(), BULK) as client:
        async with client.delete_customers(
            [Customer.by_key(k) for k in keys], journal=journal
        ) as stream:
            second = [o async for o in stream]
    summary = mxo.summarize_journal(journal)
    assert count == len(second)
    assert 0 == sum(not o.ok for o in second)
    assert len(failed) == emu.counters.delete_requests - before  # only the failed ones are re-sent
    assert [] == [k for k in keys if emu.customer(k) is not None]
    assert count == summary.customers
    assert 0 == summary.failed
    assert count == summary.erased + summary.not_found


# -- secrets and customer keys never leak --------------------------------------------------------

SECRET = "s3cr3t-CLIENT-value-7f1c"


def texts_of(error: BaseException | None) -> list[str]:
    """str and repr of an exception and of everything it chains to."""
    texts: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    return texts


async def test_no_secret_token_or_raw_key_leaks_from_any_entry_point(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every entry point at DEBUG under faults: logs, reprs, events and errors hold no secret, token or raw key."""
    caplog.set_level(logging.DEBUG)  # every logger: ours, aiohttp's, asyncio's
    faults = Faults(
        status_500=0.1, status_503=0.1, html_error=0.05, reset_after=0.05, malformed_json=0.05,
        token_500=0.3, retry_after=RA,
    )  # fmt: skip
    config = EmulatorConfig(client_secret=SECRET, faults=faults, seed=4)
    keys = [f"private.person.{n}@example.com" for n in range(30)]
    tokens: list[str] = []
    texts: list[str] = []
    events: list[mxo.Event] = []
    clients: list[mxo.MXOClient] = []

    def on_event(event: mxo.Event) -> None:
        events.append(event)
        current = clients[0]._tokens.current if clients else None
        if isinstance(event, mxo.TokenRefreshed) and current is not None:
            tokens.append(current.value)  # every access token the client ever held

    async with Emulator(config) as emu:
        client = mxo.MXOClient(
            emu.base_url, emu.site_key, emu.client_id, SECRET, retry=BULK, on_event=on_event
        )
        clients.append(client)
        async with client:
            for key in keys[:5]:
                for call in (
                    client.send_activity(
                        Customer.by_key(key), "web://x", [Activity("p", "t")], {"k": key}
                    ),
                    client.get_structure(Customer.by_key(key), "web://x", "customerProfile"),
                    client.delete_customer(
                        Customer(tid="a08b10a4-ead9-7667-9116-add167624b57", key=key)
                    ),
                ):
                    try:
                        texts.append(repr(await call))
                    except mxo.MXOError as error:
                        texts += texts_of(error)
            emu.revoke_tokens()  # the next calls get 401s and refresh
            reqs = [
                ActivityRequest(Customer.by_key(k), "web://x", [Activity("p", "t")]) for k in keys
            ]
            async with client.send_activities(reqs, concurrency=8) as sends:
                texts += [repr(o) for o in [o async for o in sends]]
            async with client.batcher(max_latency=0.005) as batcher:
                deliveries = [
                    await batcher.submit(Customer.by_key(k), "web://x", Activity("p", "t"))
                    for k in keys
                ]
            texts += [repr(batcher.stats), repr(await batcher.aclose()), *map(repr, deliveries)]
            texts += [t for d in deliveries for t in texts_of(d.exception())]
            for key in keys:
                emu.add_customer(key)
            # the audit record legitimately holds keys: not scanned
            journal = tmp_path / "erase.jsonl"
            async with client.delete_customers(
                [Customer.by_key(k) for k in keys], journal=journal
            ) as erasures:
                outcomes = [o async for o in erasures]
            texts += [repr(o) for o in outcomes] + [t for o in outcomes for t in texts_of(o.error)]
            texts += [
                repr(mxo.summarize_journal(journal)),
                repr(client),
                repr(client.stats),
                repr(client._tokens.current),
            ]
        texts += [repr(emu), repr(emu.config)]
    texts += [repr(e) for e in events] + [r.getMessage() for r in caplog.records] + [caplog.text]
    haystack = "\n".join(texts)
    assert len(tokens) >= 2
    assert any(isinstance(e, mxo.RetryScheduled) for e in events)
    assert any(o.error is not None for o in outcomes) or client.stats.retries > 0
    leaks = [s for s in (SECRET, *tokens, *keys) if s in haystack]
    assert [] == leaks
