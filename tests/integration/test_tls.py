"""TLS: the emulator over HTTPS with a trustme certificate; verification is always on."""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Unpack

import pytest
import trustme

import mxo_async as mxo
from mxo_async import Activity, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from tests.fakes import ClientOptions

FAST = mxo.RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_cap=0.005)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_emu(ca: trustme.CA) -> AsyncIterator[Emulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    async with Emulator(EmulatorConfig(), ssl_context=server) as running:
        yield running


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def client_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks created since ``before``, except the emulator's own connection handlers."""
    return {t for t in asyncio.all_tasks() - before if "RequestHandler" not in repr(t.get_coro())}


@pytest.fixture
def no_leaks(recwarn: pytest.WarningsRecorder) -> Iterator[None]:
    yield
    gc.collect()
    assert [] == [str(w.message) for w in recwarn]


def client_for(emu: Emulator, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    options: ClientOptions = {"retry": FAST, **kwargs}
    return mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **options)


async def test_emulator_serves_https(tls_emu: Emulator) -> None:
    """With an ssl_context the emulator's base URL is https."""
    assert tls_emu.base_url.startswith("https://127.0.0.1:")


async def test_default_trust_store_rejects_an_unknown_ca(tls_emu: Emulator, no_leaks: None) -> None:
    """A client with default settings refuses the trustme certificate: TransportError, nothing sent."""
    before = asyncio.all_tasks()
    async with client_for(tls_emu) as client:
        with pytest.raises(mxo.TransportError) as info:
            async with asyncio.timeout(10):
                await client.send_activity(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    await asyncio.sleep(0)
    assert not isinstance(info.value, mxo.AmbiguousDeliveryError)
    assert not info.value.request_sent
    assert "certificate" in str(info.value)
    assert 0 == tls_emu.counters.token_requests
    assert 0 == tls_emu.counters.requests
    assert set() == client_tasks(before)


async def test_a_certificate_failure_is_not_retried_beyond_the_token_attempts(
    tls_emu: Emulator,
) -> None:
    """The refused handshake is tried max_attempts times by the token request, and not again per call."""
    async with client_for(tls_emu) as client:
        with pytest.raises(mxo.TransportError):
            await client.delete_customer(Customer.by_key("k"))
        attempts = client.stats.requests
    assert FAST.max_attempts == attempts


async def test_a_context_trusting_the_ca_works(
    tls_emu: Emulator, trusting: ssl.SSLContext, no_leaks: None
) -> None:
    """ssl=<SSLContext trusting the CA>: the three calls succeed over HTTPS."""
    alice = Customer.by_key("alice@example.com")
    async with client_for(tls_emu, ssl=trusting) as client:
        sent = await client.send_activity(alice, "web://x", [Activity("p", "t")])
        profile = await client.get_structure(alice, "web://x", "customerProfile")
        erased = await client.delete_customer(alice)
    assert (sent.tid,) == erased.tids
    assert "tier" in profile.attributes
    assert 1 == tls_emu.counters.applied_activities
    assert 1 == tls_emu.counters.structures_served
    assert 1 == tls_emu.counters.deletes_applied


async def test_a_reset_over_tls_is_still_ambiguous(
    tls_emu: Emulator, trusting: ssl.SSLContext
) -> None:
    """A TLS connection reset after the activity was applied raises AmbiguousDeliveryError."""
    async with client_for(tls_emu, ssl=trusting) as client:
        await client.delete_customer(Customer.by_key("warm-up"))
        tls_emu.faults = Faults(reset_after=1.0)
        with pytest.raises(mxo.AmbiguousDeliveryError):
            await client.send_activity(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    assert 1 == tls_emu.counters.applied_activities


@pytest.mark.parametrize(
    "field, url",
    [
        ("base_url", "http://eu2.thunderhead.com"),
        ("base_url", "http://10.0.0.8:8080"),
        ("token_url", "http://auth.example.com/token"),
    ],
)
def test_plain_http_to_a_remote_host_is_refused(field: str, url: str) -> None:
    """A non-loopback http:// URL raises ValidationError naming the field."""
    urls = {"base_url": "https://eu2.thunderhead.com", field: url}
    with pytest.raises(mxo.ValidationError) as info:
        mxo.MXOClient(
            urls["base_url"], "ONE-LJBKEO4Y7J-5669", "id", "secret", token_url=urls.get("token_url")
        )
    assert field == info.value.field


@pytest.mark.parametrize("url", ["http://eu2.thunderhead.com", "http://10.0.0.8:8080"])
async def test_allow_insecure_http_opts_in(url: str) -> None:
    """allow_insecure_http=True accepts a remote http:// URL."""
    async with mxo.MXOClient(
        url, "ONE-LJBKEO4Y7J-5669", "id", "secret", allow_insecure_http=True
    ) as client:
        assert url in repr(client)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]
)
async def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    """Loopback hosts may use http:// (the emulator, local proxies)."""
    async with mxo.MXOClient(url, "ONE-LJBKEO4Y7J-5669", "id", "secret") as client:
        assert url in repr(client)
