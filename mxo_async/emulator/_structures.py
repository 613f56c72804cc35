"""Pull Structures the emulator publishes, computed from stored data and context properties.

Like MXO, the root node is not returned: each function returns the root's children. A structure read
for a customer the store does not know is computed over empty data and creates nothing.

- ``activitySummary``: ``{"activityCount": n, "propositions": {code: {activityType: n}},
  "lastActivityTime": "<RFC 3339>" | null}``.
- ``customerProfile``: ``{"tier": "bronze"|"silver"|"gold", "activityCount": n, "offers": [...]}``
  plus any attributes seeded with ``Emulator.add_customer``; a seeded ``tier`` wins. Offers follow
  eligibility rules on context properties and data: ``renewalDue=true`` adds ``renew10``; tier
  ``gold`` adds ``lounge``; ``segment=<s>`` adds ``segment-<s>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._requests import format_timestamp
from ._store import Record

__all__ = ["STRUCTURES", "StructureData"]

StructureData = dict[str, object]
_EMPTY = Record(tids=[])
GOLD_FROM = 10
SILVER_FROM = 3


def activity_summary(record: Record | None, properties: Mapping[str, str]) -> StructureData:
    """Count activities per proposition and activity type, with the latest activity time."""
    record = record or _EMPTY
    return {
        "activityCount": record.total,
        "propositions": {code: dict(types) for code, types in record.counts.items()},
        "lastActivityTime": (
            format_timestamp(record.last_activity) if record.last_activity is not None else None
        ),
    }


def customer_profile(record: Record | None, properties: Mapping[str, str]) -> StructureData:
    """A tier from the activity count (or seeded), and the offers the customer is eligible for."""
    record = record or _EMPTY
    computed = (
        "gold"
        if record.total >= GOLD_FROM
        else "silver"
        if record.total >= SILVER_FROM
        else "bronze"
    )
    tier = record.attributes.get("tier", computed)
    offers: list[dict[str, str]] = []
    if properties.get("renewalDue", "").lower() == "true":
        offers.append({"code": "renew10", "name": "10% off your renewal"})
    if tier == "gold":
        offers.append({"code": "lounge", "name": "Airport lounge access"})
    segment = properties.get("segment")
    if segment:
        offers.append({"code": f"segment-{segment}", "name": f"Offer for segment {segment}"})
    profile: StructureData = dict(record.attributes)
    profile.update(tier=tier, activityCount=record.total, offers=offers)
    return profile


STRUCTURES: dict[str, Callable[[Record | None, Mapping[str, str]], StructureData]] = {
    "activitySummary": activity_summary,
    "customerProfile": customer_profile,
}
