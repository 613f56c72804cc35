"""``mxo-async --otel``: a span summary on stderr, OTLP export to a collector, and the usage
error when no OTLP endpoint is set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from mxo_async.cli import cli
from mxo_async.emulator import Emulator

from .test_cli_commands import activity_lines, emulator, emulator_config, target_env, write

__all__ = ["emulator", "emulator_config"]  # the fixtures, used by name

SEND_SPAN = "POST /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}/activity"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP collector that keeps the body of every POST by path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: dict[str, list[bytes]] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_otel_console_prints_a_span_summary(emulator: Emulator, tmp_path: Path) -> None:
    """``--otel console send``: delivered, and stderr counts the send spans by outcome."""
    lines, _ = activity_lines(6, per_line=1)
    result = CliRunner().invoke(
        cli,
        [
            "--otel",
            "console",
            "send",
            write(tmp_path / "in.ndjson", lines),
            "--touchpoint",
            "web://x",
        ],
        env=target_env(emulator),
    )
    assert 0 == result.exit_code, result.output
    assert f"{SEND_SPAN}: 6 [ok=6] attempts=6" in result.stderr


def test_otel_without_an_endpoint_is_a_usage_error(emulator: Emulator, tmp_path: Path) -> None:
    """``--otel`` with no OTEL_EXPORTER_OTLP_ENDPOINT: exit 2 saying what to set; nothing sent."""
    env = {**target_env(emulator), "OTEL_EXPORTER_OTLP_ENDPOINT": None,
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None}  # fmt: skip
    lines, _ = activity_lines(2, per_line=1)
    result = CliRunner().invoke(
        cli,
        ["--otel", "send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "web://x"],
        env=env,
    )
    assert (2, 0) == (result.exit_code, emulator.counters.activity_requests)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr


def test_otel_exports_spans_and_metrics_through_otlp(
    emulator: Emulator, collector: Collector, tmp_path: Path
) -> None:
    """``--otel`` with the standard variables: the collector receives our spans and metrics."""
    env = {**target_env(emulator), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "ingest"}  # fmt: skip
    lines, _ = activity_lines(3, per_line=1)
    result = CliRunner().invoke(
        cli,
        ["--otel", "send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "web://x"],
        env=env,
    )
    traces = b"".join(collector.received.get("/v1/traces", []))
    metrics = b"".join(collector.received.get("/v1/metrics", []))
    assert 0 == result.exit_code, result.output
    assert (True, True, True) == (
        SEND_SPAN.encode() in traces,
        b"ingest" in traces,
        b"http.client.request.duration" in metrics,
    )
