"""Shared pieces of the benchmarks: credentials, request shapes, process measurements."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator
from typing import Any

from mxo_async import Activity, ActivityRequest, Customer

# The emulator's default tenant; the lean benchmark server accepts any credentials.
SITE_KEY = "ONE-TESTTEST01-0001"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
API_VERSION = "3.1.0"
TOUCHPOINT = "web://bench.example.com"
DISTINCT_CUSTOMERS = 10_000  # keys cycle, so the emulator's per-customer aggregates stay bounded

# glibc's malloc adjusts its mmap and trim thresholds as a process runs. asyncio reads each socket
# into a fresh 256 KiB buffer; depending on where the heap's top happens to be, a process then pays
# two page faults per read (allocate, trim, fault again) or none, for its whole life: measured here
# as +15-30 µs of system time per request in some fresh processes and not in others, the largest
# source of swing between runs, for every contender alike. Pinning the thresholds (glibc's own
# environment variables) takes the lottery out; ``python -m benchmarks --malloc default`` keeps it.
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "33554432"}


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs): the last CPU for the server, the rest for the clients.

    In production the MXO server is another machine. Here it shares two cores with the client,
    and letting the scheduler place both freely swung the ratios by +-5% from run to run (the
    client measured 1.03x raw pinned in three runs out of three, 1.07-1.13x unpinned). None when
    the machine has one CPU or cannot set affinities.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


def api_root(base_url: str) -> str:
    return f"{base_url}/one/oauth2/rt/api/{API_VERSION}/customer/{SITE_KEY}"


def customer_key(i: int) -> str:
    return f"customer-{i % DISTINCT_CUSTOMERS}@example.com"


def activity_requests(n: int, start: int = 0) -> Iterator[ActivityRequest]:
    """What an ingestion worker builds from its input: one validated request per row."""
    for i in range(start, start + n):
        yield ActivityRequest(
            Customer.by_key(customer_key(i)),
            TOUCHPOINT,
            (Activity("bench", "click", dynamic_proposition=f"offer-{i % 100}"),),
        )


def call_args(i: int) -> tuple[Customer, str, list[Activity]]:
    """Arguments of one ``send_activity`` call for row ``i``."""
    return (
        Customer.by_key(customer_key(i)),
        TOUCHPOINT,
        [Activity("bench", "click", dynamic_proposition=f"offer-{i % 100}")],
    )


def wire_body(i: int) -> dict[str, Any]:
    """The same request as a raw-HTTP user would build it: the docs/wire-contract.md dict for row ``i``."""
    return {
        "customerContext": {
            "identifiers": [{"apiName": "customerkey", "value": customer_key(i)}],
            "baseTouchpointUri": TOUCHPOINT,
        },
        "activities": [
            {
                "propositionCode": "bench",
                "dynamicPropositionCode": f"offer-{i % 100}",
                "activityTypeCode": "click",
            }
        ],
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """Peak resident set size (VmHWM) of this process, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def emit(result: dict[str, Any]) -> None:
    """Hand a runner's result to the parent process: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
