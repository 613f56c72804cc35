"""Tests for the coalescing batcher, driven by a recording fake ``send`` and a fake clock."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypedDict, Unpack

import pytest

from mxo_async._batcher import Batcher, BatcherFullError
from mxo_async._errors import (
    AmbiguousDeliveryError,
    BadRequestError,
    MXOError,
    RejectedActivitiesError,
    ValidationError,
)
from mxo_async._events import BatchFlushed, Event, EventHandler
from mxo_async._models import (
    Activity,
    ActivityError,
    ActivityRequest,
    ActivityResult,
    Customer,
    Device,
)

TOUCHPOINT = "atm://atm"


def act(n: int) -> Activity:
    """An activity that carries a sequence number, so order can be checked."""
    return Activity("atm", "balance_inquiry", dynamic_proposition=f"n{n}")


def numbers(request: ActivityRequest) -> list[int]:
    return [int(a.dynamic_proposition[1:]) for a in request.activities if a.dynamic_proposition]


class FakeTime:
    """A clock that only moves when the test says so; ``sleep`` waits for ``advance``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        await settle()


async def settle() -> None:
    """Let ready tasks (scheduler, sends, settlements) run."""
    for _ in range(10):
        await asyncio.sleep(0)


class FakeSend:
    """Records every request; can hold requests at a gate and fail chosen customers."""

    def __init__(self) -> None:
        self.requests: list[ActivityRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None
        self.fail: dict[Customer, MXOError] = {}

    async def __call__(self, request: ActivityRequest) -> ActivityResult:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                # A safety net, not a timing: a failing assertion must not leave aclose() hanging.
                await asyncio.wait_for(self.gate.wait(), timeout=5)
        finally:
            self.in_flight -= 1
        error = self.fail.get(request.customer)
        if error is not None:
            raise error
        return ActivityResult(tid=f"tid-{request.customer.key}")


@pytest.fixture
def send() -> FakeSend:
    return FakeSend()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


Send = Callable[[ActivityRequest], Awaitable[ActivityResult]]


class BatcherOptions(TypedDict, total=False):
    """The Batcher's settings but its time seams (``clock``, ``sleep``), which ``make`` sets."""

    max_activities: int
    max_latency: float
    max_pending: int
    when_full: Literal["wait", "raise"]
    max_concurrent_requests: int | None
    on_error: Callable[[ActivityRequest, MXOError], None] | None
    on_event: EventHandler | None


class MakeBatcher(Protocol):
    """The ``make`` fixture: a Batcher on the fake clock, sending with ``send`` by default."""

    def __call__(self, send_fn: Send = ..., **options: Unpack[BatcherOptions]) -> Batcher: ...


@pytest.fixture
def make(send: FakeSend, fake_time: FakeTime) -> MakeBatcher:
    def factory(send_fn: Send = send, **options: Unpack[BatcherOptions]) -> Batcher:
        return Batcher(send_fn, clock=fake_time.clock, sleep=fake_time.sleep, **options)

    return factory


ALICE = Customer.by_key("alice@example.com")
BOB = Customer.by_key("bob@example.com")


async def test_interleaved_customers_coalesce_into_one_request_each(
    send: FakeSend, make: MakeBatcher
) -> None:
    """10 activities x 2,000 customers, interleaved, go out as 2,000 requests in submit order."""
    customers = [Customer.by_key(f"c{i}@example.com") for i in range(2000)]
    async with make(max_pending=20_000) as batcher:
        for n in range(10):
            for customer in customers:
                await batcher.submit(customer, TOUCHPOINT, act(n))
    assert len(send.requests) == 2000
    assert [list(range(10))] * 2000 == [numbers(r) for r in send.requests]
    assert sorted(customers, key=str) == sorted((r.customer for r in send.requests), key=str)


async def test_stats_report_activities_per_request(make: MakeBatcher) -> None:
    """Stats count requests, activities sent and flush reasons."""
    batcher = make(max_activities=10)
    for n in range(25):
        await batcher.submit(ALICE, TOUCHPOINT, act(n))
    await batcher.aclose()
    stats = batcher.stats
    assert 3 == stats.requests
    assert 25 == stats.activities_sent
    assert 25 / 3 == stats.activities_per_request
    assert stats.flushes == {"size": 2, "latency": 0, "pressure": 0, "flush": 0, "close": 1}


async def test_size_flush_sends_a_full_buffer_at_once(send: FakeSend, make: MakeBatcher) -> None:
    """A buffer holding max_activities is sent without waiting for the latency deadline."""
    events: list[Event] = []
    async with make(max_activities=3, on_event=events.append) as batcher:
        for n in range(3):
            await batcher.submit(ALICE, TOUCHPOINT, act(n))
        await settle()
        assert [numbers(r) for r in send.requests] == [[0, 1, 2]]
        assert [BatchFlushed(3, "size")] == events


async def test_latency_counts_from_the_first_activity_under_a_trickle(
    send: FakeSend, fake_time: FakeTime, make: MakeBatcher
) -> None:
    """A steady trickle does not postpone the flush: it comes max_latency after the first one."""
    events: list[Event] = []
    async with make(max_latency=1.0, on_event=events.append) as batcher:
        for n in range(4):  # submits at t = 0, 0.4, 0.8, 1.2; the first buffer is due at 1.0
            await batcher.submit(ALICE, TOUCHPOINT, act(n))
            await fake_time.advance(0.4)
        assert [numbers(r) for r in send.requests] == [[0, 1, 2]]
        assert [BatchFlushed(3, "latency")] == events


async def test_no_request_before_the_latency_deadline(
    send: FakeSend, fake_time: FakeTime, make: MakeBatcher
) -> None:
    """Nothing is sent while the first activity is younger than max_latency."""
    async with make(max_latency=1.0) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0))
        await fake_time.advance(0.99)
        assert send.requests == []


async def test_one_request_in_flight_per_context(send: FakeSend, make: MakeBatcher) -> None:
    """While a context's request is in flight, its next buffer waits; other contexts go on."""
    send.gate = asyncio.Event()
    async with make(max_activities=2) as batcher:
        for n in range(6):
            await batcher.submit(ALICE, TOUCHPOINT, act(n))
        await batcher.submit(BOB, TOUCHPOINT, act(100), act(101))
        await settle()
        assert [(r.customer, numbers(r)) for r in send.requests] == [
            (ALICE, [0, 1]),
            (BOB, [100, 101]),
        ]
        send.gate.set()
    assert [numbers(r) for r in send.requests if r.customer == ALICE] == [[0, 1], [2, 3], [4, 5]]


async def test_buffer_keeps_filling_while_its_context_is_in_flight(
    send: FakeSend, fake_time: FakeTime, make: MakeBatcher
) -> None:
    """A buffer past its deadline but blocked by an in-flight request still takes activities."""
    send.gate = asyncio.Event()
    async with make(max_latency=1.0) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0))
        await fake_time.advance(1.0)
        await batcher.submit(ALICE, TOUCHPOINT, act(1))
        await fake_time.advance(1.0)
        await batcher.submit(ALICE, TOUCHPOINT, act(2))
        send.gate.set()
        await settle()
        assert [numbers(r) for r in send.requests] == [[0], [1, 2]]


async def test_contexts_differ_by_touchpoint_and_properties(
    send: FakeSend, make: MakeBatcher
) -> None:
    """Different touchpoints or properties are separate requests; equal properties share one."""
    async with make() as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0), properties={"a": "1", "b": "2"})
        await batcher.submit(ALICE, TOUCHPOINT, act(1), properties={"b": "2", "a": "1"})
        await batcher.submit(ALICE, TOUCHPOINT, act(2))
        await batcher.submit(ALICE, "web://bank.com", act(3))
    assert [numbers(r) for r in send.requests] == [[0, 1], [2], [3]]
    assert dict(send.requests[0].properties) == {"a": "1", "b": "2"}


async def test_submit_waits_when_full_until_room_is_released(
    send: FakeSend, make: MakeBatcher
) -> None:
    """With max_pending reached, submit waits until a request settles."""
    send.gate = asyncio.Event()
    async with make(max_pending=2) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0), act(1))
        waiting = asyncio.ensure_future(batcher.submit(BOB, TOUCHPOINT, act(2)))
        await settle()
        assert not waiting.done()
        assert 1 == batcher.stats.waiting_submits
        send.gate.set()
        await settle()
        assert waiting.done()
        await waiting


async def test_full_batcher_sends_oldest_buffer_early(send: FakeSend, make: MakeBatcher) -> None:
    """A waiting submit makes the oldest open buffer go out now (reason "pressure")."""
    events: list[Event] = []
    send.gate = asyncio.Event()
    async with make(max_pending=3, on_event=events.append) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0), act(1))
        await batcher.submit(BOB, TOUCHPOINT, act(2))
        waiting = asyncio.ensure_future(batcher.submit(BOB, TOUCHPOINT, act(3)))
        await settle()
        assert [BatchFlushed(2, "pressure")] == events
        send.gate.set()
        await waiting


async def test_waiting_submits_are_admitted_in_order(send: FakeSend, make: MakeBatcher) -> None:
    """Waiting submits enter FIFO: a small later one does not overtake a big earlier one."""
    send.gate = asyncio.Event()
    order: list[str] = []

    async def submit(name: str, *activities: Activity) -> None:
        await batcher.submit(BOB, TOUCHPOINT, *activities)
        order.append(name)

    async with make(max_pending=3) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0), act(1), act(2))
        big = asyncio.ensure_future(submit("big", act(3), act(4)))
        await settle()
        small = asyncio.ensure_future(submit("small", act(5)))
        await settle()
        send.gate.set()
        await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_cancelled_waiter_does_not_block_the_queue(send: FakeSend, make: MakeBatcher) -> None:
    """A waiting submit that is cancelled leaves the line; the next one is admitted."""
    send.gate = asyncio.Event()
    async with make(max_pending=1) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0))
        first = asyncio.ensure_future(batcher.submit(BOB, TOUCHPOINT, act(1)))
        second = asyncio.ensure_future(batcher.submit(BOB, TOUCHPOINT, act(2)))
        await settle()
        first.cancel()
        send.gate.set()
        await second
        assert first.cancelled()
    assert [numbers(r) for r in send.requests] == [[0], [2]]


async def test_raise_mode_rejects_when_full(make: MakeBatcher) -> None:
    """With when_full="raise", a submit beyond max_pending raises BatcherFullError."""
    async with make(max_pending=1, when_full="raise") as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0))
        with pytest.raises(BatcherFullError):
            await batcher.submit(BOB, TOUCHPOINT, act(1))
        assert batcher.stats.pending == 1


async def test_aclose_delivers_everything_and_leaves_no_tasks(
    send: FakeSend, make: MakeBatcher
) -> None:
    """Activities submitted right before aclose are all delivered; no task is left behind."""
    batcher = make(max_activities=7)
    deliveries = [await batcher.submit(ALICE, TOUCHPOINT, act(n)) for n in range(50)]
    report = await batcher.aclose()
    assert 50 == report.delivered
    assert 0 == report.failed
    assert 0 == report.ambiguous
    assert 50 == report.submitted
    assert 8 == report.requests
    assert all(d.done() for d in deliveries)
    assert {asyncio.current_task()} == asyncio.all_tasks()
    assert list(range(50)) == [n for r in send.requests for n in numbers(r)]


async def test_aclose_twice_returns_the_same_report(make: MakeBatcher) -> None:
    """aclose() is idempotent."""
    batcher = make()
    await batcher.submit(ALICE, TOUCHPOINT, act(0))
    assert await batcher.aclose() == await batcher.aclose()


async def test_submit_after_close_raises(make: MakeBatcher) -> None:
    """A closed batcher refuses new activities with RuntimeError."""
    batcher = make()
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(ALICE, TOUCHPOINT, act(0))


async def test_close_turns_away_waiting_submits(send: FakeSend, make: MakeBatcher) -> None:
    """A submit still waiting for room when aclose starts raises RuntimeError."""
    send.gate = asyncio.Event()
    batcher = make(max_pending=1)
    await batcher.submit(ALICE, TOUCHPOINT, act(0))
    waiting = asyncio.ensure_future(batcher.submit(BOB, TOUCHPOINT, act(1)))
    await settle()
    closing = asyncio.ensure_future(batcher.aclose())
    await settle()
    send.gate.set()
    report = await closing
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    assert 1 == report.submitted
    assert 1 == report.delivered


async def test_leaving_with_an_exception_still_sends(send: FakeSend, make: MakeBatcher) -> None:
    """An exception inside ``async with`` does not drop what was already submitted."""
    with pytest.raises(KeyError):
        async with make() as batcher:
            await batcher.submit(ALICE, TOUCHPOINT, act(0))
            raise KeyError("boom")
    assert [numbers(r) for r in send.requests] == [[0]]


async def test_flush_settles_everything_submitted_so_far(send: FakeSend, make: MakeBatcher) -> None:
    """flush() sends open buffers (reason "flush") and returns once their deliveries settled."""
    async with make() as batcher:
        deliveries = [await batcher.submit(c, TOUCHPOINT, act(0)) for c in (ALICE, BOB)]
        await batcher.flush()
        assert [d.done() for d in deliveries] == [True, True]
        assert batcher.stats.flushes["flush"] == 2


async def test_delivery_resolves_to_the_result(make: MakeBatcher) -> None:
    """Awaiting a delivery returns the ActivityResult of its request."""
    async with make() as batcher:
        delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0))
        await batcher.flush()
        assert ActivityResult("tid-alice@example.com") == await delivery
        assert ActivityResult("tid-alice@example.com") == delivery.result()
        assert delivery.exception() is None


async def test_delivery_can_be_awaited_before_it_settles(make: MakeBatcher) -> None:
    """An awaiter blocked on a pending delivery wakes up with the result."""
    async with make() as batcher:
        delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0))
        waiter = asyncio.ensure_future(delivery)
        await settle()
        assert not waiter.done()
        await batcher.flush()
        assert ActivityResult("tid-alice@example.com") == await waiter


async def test_failure_settles_deliveries_and_is_reported(
    send: FakeSend, make: MakeBatcher
) -> None:
    """A final error reaches the delivery, on_error and the report's failed count."""
    error = BadRequestError(400, "bad")
    send.fail[ALICE] = error
    dead: list[tuple[ActivityRequest, MXOError]] = []
    batcher = make(on_error=lambda request, exc: dead.append((request, exc)))
    delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0), act(1))
    await batcher.submit(BOB, TOUCHPOINT, act(2))
    report = await batcher.aclose()
    with pytest.raises(BadRequestError):
        await delivery
    assert 1 == report.delivered
    assert 2 == report.failed
    assert 0 == report.ambiguous
    assert [(send.requests[0], error)] == dead
    assert not report.ok


async def test_ambiguous_failure_counts_as_ambiguous(send: FakeSend, make: MakeBatcher) -> None:
    """AmbiguousDeliveryError is reported as ambiguous, not failed."""
    send.fail[ALICE] = AmbiguousDeliveryError("reset after send")
    batcher = make()
    delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0))
    report = await batcher.aclose()
    assert 0 == report.delivered
    assert 0 == report.failed
    assert 1 == report.ambiguous
    assert isinstance(delivery.exception(), AmbiguousDeliveryError)


async def test_unawaited_failed_deliveries_do_not_warn(send: FakeSend, make: MakeBatcher) -> None:
    """Failed deliveries nobody awaits are garbage-collected silently."""
    send.fail[ALICE] = BadRequestError(400, "bad")
    batcher = make()
    waiter = asyncio.ensure_future(await batcher.submit(ALICE, TOUCHPOINT, act(0)))
    await settle()
    waiter.cancel()  # an awaiter that went away: its waiter future must not leak an error
    await batcher.submit(ALICE, TOUCHPOINT, act(1))
    report = await batcher.aclose()
    del batcher, waiter
    gc.collect()
    assert report.failed == 2


async def test_on_error_exceptions_are_logged_not_raised(
    send: FakeSend, make: MakeBatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_error handler that raises is logged, and the batcher carries on."""
    send.fail[ALICE] = BadRequestError(400, "bad")

    def broken(request: ActivityRequest, error: MXOError) -> None:
        raise ZeroDivisionError

    batcher = make(on_error=broken)
    await batcher.submit(ALICE, TOUCHPOINT, act(0))
    with caplog.at_level(logging.ERROR, logger="mxo_async"):
        report = await batcher.aclose()
    assert report.failed == 1
    assert "on_error handler failed" in caplog.text
    assert "alice@example.com" not in caplog.text


async def test_non_mxo_error_from_send_becomes_mxo_error(
    make: MakeBatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """A send that raises something unexpected still settles its deliveries with an MXOError."""

    async def broken_send(request: ActivityRequest) -> ActivityResult:
        raise ZeroDivisionError

    batcher = make(broken_send)
    delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0))
    with caplog.at_level(logging.CRITICAL, logger="mxo_async"):
        await batcher.aclose()
    assert isinstance(delivery.exception(), MXOError)


@pytest.mark.parametrize(
    ("touchpoint", "activities", "properties"),
    [
        ("no scheme", (act(0),), None),
        (TOUCHPOINT, (), None),
        (TOUCHPOINT, ("not an activity",), None),
        (TOUCHPOINT, (act(0),), {"k": 1}),
        (TOUCHPOINT, tuple(act(n) for n in range(101)), None),
    ],
)
async def test_bad_input_raises_from_submit(
    make: MakeBatcher,
    touchpoint: str,
    activities: tuple[Activity, ...],
    properties: dict[str, str] | None,
) -> None:
    """Invalid input raises ValidationError from submit itself and buffers nothing."""
    async with make() as batcher:
        with pytest.raises(ValidationError):
            await batcher.submit(ALICE, touchpoint, *activities, properties=properties)
        assert 0 == batcher.stats.pending
        assert 0 == batcher.stats.submitted


async def test_bad_customer_raises_from_submit(make: MakeBatcher) -> None:
    """A customer that is not a Customer raises ValidationError from submit."""
    async with make() as batcher:
        with pytest.raises(ValidationError):
            # a str where a Customer belongs, on purpose: validation is tested
            await batcher.submit("alice", TOUCHPOINT, act(0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_activities": 0},
        {"max_activities": 101},
        {"max_latency": 0},
        {"max_pending": 0},
        {"when_full": "drop"},
        {"max_concurrent_requests": 0},
    ],
)
def test_bad_settings_raise(send: FakeSend, kwargs: dict[str, object]) -> None:
    """Out-of-range settings raise ValidationError at construction."""
    with pytest.raises(ValidationError):
        Batcher(send, **kwargs)  # type: ignore[arg-type]  # any value, on purpose: validation is tested


async def test_max_concurrent_requests_caps_requests_in_flight(
    send: FakeSend, make: MakeBatcher
) -> None:
    """max_concurrent_requests bounds requests in flight across contexts."""
    send.gate = asyncio.Event()
    customers = [Customer.by_key(f"c{i}@example.com") for i in range(5)]
    async with make(max_concurrent_requests=2) as batcher:
        for customer in customers:
            await batcher.submit(customer, TOUCHPOINT, act(0))
        flushing = asyncio.ensure_future(batcher.flush())
        await settle()
        assert 2 == len(send.requests)
        assert 2 == batcher.stats.in_flight
        send.gate.set()
        await flushing
    assert 5 == len(send.requests)
    assert 2 == send.max_in_flight


def test_garbage_collected_batcher_with_unsent_activities_warns(send: FakeSend) -> None:
    """A batcher dropped while holding unsent activities warns with ResourceWarning."""
    holder: list[Batcher] = []

    async def abandon() -> None:
        batcher = Batcher(send, max_latency=3600)
        await batcher.submit(ALICE, TOUCHPOINT, act(0))
        holder.append(batcher)

    asyncio.run(abandon())  # the loop ends with the buffer unsent and the batcher not closed
    with pytest.warns(ResourceWarning, match="1 unsent"):
        holder.clear()
        gc.collect()


async def test_default_clock_and_sleep_flush_on_latency(send: FakeSend) -> None:
    """With the real clock and sleep, a lone activity is sent once max_latency has passed."""
    async with Batcher(send, max_latency=0.01) as batcher:
        delivery = await batcher.submit(ALICE, TOUCHPOINT, act(0))
        result = await asyncio.wait_for(delivery, timeout=5)
        assert ActivityResult("tid-alice@example.com") == result
        assert 1 == batcher.stats.flushes["latency"]


async def test_stats_count_in_flight_activities_as_pending(
    send: FakeSend, make: MakeBatcher
) -> None:
    """Pending covers buffered and in-flight activities; buffers and in_flight are gauges."""
    send.gate = asyncio.Event()
    async with make(max_activities=2) as batcher:
        await batcher.submit(ALICE, TOUCHPOINT, act(0), act(1))
        await batcher.submit(BOB, TOUCHPOINT, act(2))
        await settle()
        stats = batcher.stats
        assert 3 == stats.pending
        assert 1 == stats.buffers
        assert 1 == stats.in_flight
        send.gate.set()


def rejecting(codes: set[str]) -> Send:
    """A send that answers 200 but rejects activities whose proposition is in ``codes``."""

    async def send_fn(request: ActivityRequest) -> ActivityResult:
        errors = tuple(
            ActivityError("INVALID_PROPOSITION_CODE", "unknown", activity)
            for activity in request.activities
            if activity.proposition in codes
        )
        result = ActivityResult("tid-1", errors)
        if errors:
            raise RejectedActivitiesError(result)
        return result

    return send_fn


async def test_only_deliveries_with_rejected_activities_fail(
    make: MakeBatcher,
) -> None:
    """In one coalesced request, exactly the deliveries whose activities were rejected fail."""
    batcher = make(send_fn=rejecting({"bad"}))
    good = await batcher.submit(ALICE, TOUCHPOINT, Activity("ok", "view"))
    bad = await batcher.submit(ALICE, TOUCHPOINT, Activity("bad", "view"))
    mixed = await batcher.submit(ALICE, TOUCHPOINT, Activity("ok", "click"), Activity("bad", "x"))
    report = await batcher.aclose()
    assert ActivityResult("tid-1") == await good
    bad_error = bad.exception()
    mixed_error = mixed.exception()
    assert isinstance(bad_error, RejectedActivitiesError)
    assert isinstance(mixed_error, RejectedActivitiesError)
    assert [Activity("bad", "view")] == [error.activity for error in bad_error.rejected]
    assert [Activity("bad", "x")] == [error.activity for error in mixed_error.rejected]
    assert 1 == report.requests
    assert 2 == report.rejected
    assert 2 == report.delivered
    assert 0 == report.failed
    assert not report.ok


async def test_on_error_sees_exactly_the_rejected_activities(
    make: MakeBatcher,
) -> None:
    """on_error receives a request holding only the rejected activities, with their errors."""
    dead: list[tuple[ActivityRequest, MXOError]] = []
    batcher = make(
        send_fn=rejecting({"bad"}), on_error=lambda request, exc: dead.append((request, exc))
    )
    await batcher.submit(ALICE, TOUCHPOINT, Activity("ok", "view"), Activity("bad", "view"))
    await batcher.submit(ALICE, TOUCHPOINT, Activity("bad", "click"))
    await batcher.aclose()
    assert 1 == len(dead)
    request, error = dead[0]
    assert (Activity("bad", "view"), Activity("bad", "click")) == request.activities
    assert isinstance(error, RejectedActivitiesError)
    assert 2 == len(error.rejected)


async def test_devices_split_contexts(send: FakeSend, make: MakeBatcher) -> None:
    """Activities of one customer on two devices travel in two requests, each with its device."""
    phone = Device("App", "SMARTPHONE", "IOS")
    laptop = Device("App", "PERSONAL_COMPUTER", "OSX")
    batcher = make()
    await batcher.submit(ALICE, TOUCHPOINT, act(0), device=phone)
    await batcher.submit(ALICE, TOUCHPOINT, act(1), device=laptop)
    await batcher.submit(ALICE, TOUCHPOINT, act(2), device=phone)
    await batcher.aclose()
    sent = {request.device: numbers(request) for request in send.requests}
    assert {phone: [0, 2], laptop: [1]} == sent
