"""The library's logger stays silent unless the application configures logging."""

from __future__ import annotations

import subprocess
import sys

# A program that never configures logging, catching an AuthenticationError (a WARNING is logged).
PROGRAM = """
import asyncio
import mxo_async as mxo
from mxo_async._transport import RawResponse

class RefusingTransport:
    async def request(self, method, url, headers, body, time_left=None):
        return RawResponse(401, {}, b'{"error": "invalid_client"}')

    async def aclose(self):
        pass

async def main():
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com", "SK", "id", "secret", transport=RefusingTransport()
    )
    async with client:
        try:
            await client.send_activity(mxo.Customer.by_key("k"), "web://x", mxo.Activity("p", "t"))
        except mxo.AuthenticationError:
            print("caught")

asyncio.run(main())
"""


def test_a_caught_error_prints_nothing_on_stderr() -> None:
    """Without logging configured, a handled AuthenticationError leaves stderr empty."""
    run = subprocess.run(  # noqa: S603 - our own interpreter and program
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert "caught\n" == run.stdout
    assert "" == run.stderr
