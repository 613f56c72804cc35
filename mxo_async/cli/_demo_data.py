"""Realistic, reproducible demo traffic: a retail bank's customers across four channels."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from mxo_async import Activity, ActivityRequest, Customer

__all__ = [
    "ACTIVITY_TYPES",
    "PROFILE_TOUCHPOINT",
    "PROPOSITIONS",
    "TOUCHPOINTS",
    "demo_customer",
    "demo_requests",
    "erasure_customers",
]

WEB = "web://bank.example.com"
APP = "app://bank-mobile"
ATM = "atm://atm"
CALL = "call://contact-centre"
TOUCHPOINTS = (WEB, APP, ATM, CALL)
PROFILE_TOUCHPOINT = WEB
_TOUCHPOINT_WEIGHTS = (45, 35, 12, 8)

# proposition -> (activity types, dynamic propositions); the ATM's are generated per machine.
_PROPOSITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "credit-card": (
        ("view", "compare", "apply"),
        ("card-platinum", "card-cashback", "card-travel"),
    ),
    "mortgage": (
        ("view", "calculator", "apply", "callback_requested"),
        ("fixed-2y", "fixed-5y", "tracker"),
    ),
    "savings": (("view", "open", "deposit"), ("easy-access", "fixed-1y", "junior-isa")),
    "insurance": (("quote", "renewal_viewed", "renewed"), ("home", "car", "travel")),
}
_ATM_TYPES = ("balance_inquiry", "withdrawal", "pin_change")
# The codes the demo sends: the catalogue of its emulated tenant, which rejects any other code.
PROPOSITIONS = frozenset({"atm", *_PROPOSITIONS})
ACTIVITY_TYPES = frozenset(
    {*_ATM_TYPES, *(t for types, _ in _PROPOSITIONS.values() for t in types)}
)
_SEGMENTS = ("retail", "premier", "student", "business")
_HISTORY = timedelta(days=30)


def demo_customer(seed: int, number: int) -> Customer:
    """The demo's customer ``number``: a key in the reserved ``example.invalid`` domain."""
    return Customer.by_key(f"demo-{seed}-{number:06d}@example.invalid")


def _activity(rng: random.Random, touchpoint: str, moment: datetime) -> Activity:
    if touchpoint == ATM:
        return Activity(
            "atm", rng.choice(_ATM_TYPES), f"atm-{rng.randrange(10_000, 99_999)}", moment
        )
    proposition = rng.choice(tuple(_PROPOSITIONS))
    types, dynamic = _PROPOSITIONS[proposition]
    return Activity(proposition, rng.choice(types), rng.choice((*dynamic, None)), moment)


def demo_requests(
    customers: int, per_customer: int, seed: int, now: datetime
) -> Iterator[ActivityRequest]:
    """Lazily yield each customer's activities of the last 30 days, one request per touchpoint.

    Activities of one customer at one touchpoint share a request (in time order) with the
    customer's segment as a context property; the same ``seed`` always yields the same traffic.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not a secret
    for number in range(customers):
        customer = demo_customer(seed, number)
        segment = rng.choice(_SEGMENTS)
        visits: dict[str, list[Activity]] = {}
        moments = sorted(now - _HISTORY * rng.random() for _ in range(per_customer))
        for moment in moments:
            touchpoint = rng.choices(TOUCHPOINTS, _TOUCHPOINT_WEIGHTS)[0]
            visits.setdefault(touchpoint, []).append(_activity(rng, touchpoint, moment))
        for touchpoint, activities in visits.items():
            for start in range(0, len(activities), 100):  # the API takes at most 100 per request
                yield ActivityRequest(
                    customer, touchpoint, activities[start : start + 100], {"segment": segment}
                )


def erasure_customers(customers: int, seed: int, every: int = 10) -> Iterator[Customer]:
    """Every ``every``-th demo customer (10% by default): the ones the demo erases."""
    for number in range(0, customers, every):
        yield demo_customer(seed, number)
