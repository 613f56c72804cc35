"""A fleet of processes sharing one MXO tenant's limits through Redis (extra ``redis``).

``MXOClient(..., coordinator=RedisCoordinator(redis, namespace="shop"))`` shares the request rate,
the ``Retry-After`` pause, the adaptive rate and (``share_token=True``) the access token with
every other process attached to the same namespace and tenant. See the README, "Running a fleet".

How it works (``_link.py``, ``_tokens.py``, the Lua in ``_scripts.py``):

* **Rate.** Permits are leased from a GCRA in Redis (``_scripts.SYNC``) in batches sized from the
  process's own recent rate (``lease_span`` seconds of it), so a busy process makes one round trip
  per batch. A batch is a run of time slots, one every ``1/rate``; a slot not used within
  ``_GRACE`` of its time is dropped, so an idle process holds nothing.
* **Pause.** A ``Retry-After`` sets a key with a PX expiry and publishes it; every process hears it
  at once (pub/sub) and reads it again on every lease.
* **Adaptation.** A throttle under pushback asks for a cut; Redis applies it once per cooldown to
  the fleet's rate, from the fleet's measured rates, and regrows it along the CUBIC curve.
* **Token** (``share_token=True``): cached in Redis with its expiry, fetched by one process under
  a lock with a TTL; a 401 deletes it only if it is still the token that was sent.
* **Faults.** Any Redis failure switches the link to the client's own throttle at its share of the
  rate (``rate / expected_processes``), emits :class:`FleetSharingChanged`, logs once, and a
  background task reconnects with backoff and resumes sharing. Delivery never stops.

Workers on Redis Streams consumer groups (``_ingest.py``, ``_sweep.py``, ``_group.py``; their Lua in
``_stream_scripts.py``): :class:`ActivityStream` carries ``mxo-async send`` records to ingestion
workers, :class:`ErasureSweep` spreads one erasure sweep over many; both acknowledge an entry only
once it settled, in the same atomic step that records its outcome.
"""

from __future__ import annotations

from .._events import FleetSharingChanged
from ._base import CoordinatorError
from ._coordinator import RedisCoordinator
from ._ingest import ActivityStream, IngestWorker, WorkerStats, WorkerStopped
from ._sweep import EnqueueProgress, ErasureSweep, SweepStats, SweepStatus

__all__ = [
    "ActivityStream",
    "CoordinatorError",
    "EnqueueProgress",
    "ErasureSweep",
    "FleetSharingChanged",
    "IngestWorker",
    "RedisCoordinator",
    "SweepStats",
    "SweepStatus",
    "WorkerStats",
    "WorkerStopped",
]
