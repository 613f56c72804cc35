"""Machine description and the Markdown results table written into benchmarks/README.md."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"

TARGET_CPU = 1.10
TARGET_RPS = 0.95
TARGET_MEMORY_MIB = 50.0
TARGET_SUBMITS = 50_000.0


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "aiohttp": version("aiohttp"),
        "httpx": version("httpx"),
        "aiometer": version("aiometer"),
        "orjson": version("orjson"),
        "mxo_async": version("mxo-async"),
    }


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**misses**"


def _throughput_table(section: dict[str, Any]) -> list[str]:
    rows = section["contenders"]
    lines = [
        f"Server: `{section['server']}`, {section['rounds']} alternating round(s), "
        f"{section['concurrency']} in flight, {section['requests_per_round']:,} requests per "
        f"contender per round (httpx: a fifth); {section.get('placement', 'not pinned')}; medians, "
        "and paired ratios (each round against the raw run of the same round, median over rounds).",
        "",
        "| contender | requests | req/s | client CPU µs/request | req/s vs raw | req/s vs raw, paired | CPU vs raw | CPU vs raw, paired | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| `{name}` | {row['requests']:,} | {row['rps']:,.0f} | {row['cpu_us_per_request']:.1f} "
            f"| {row['rps_ratio']:.2f} | {row.get('rps_ratio_paired', 0):.2f} "
            f"| {row['cpu_ratio']:.2f} | {row.get('cpu_ratio_paired', 0):.2f} "
            f"| {row['failures']} |"
        )
    return lines


def _memory_table(section: dict[str, Any]) -> list[str]:
    lines = [
        "| how | requests | server | peak RSS before → after (MiB) | growth (MiB) | bytes/request | req/s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for mode, label in (
        ("fanout", "`send_activities` (generator)"),
        ("sweep", "`delete_customers` (generator)"),
        ("journal", "`delete_customers(journal=...)`"),
        ("gather", "naive `gather`"),
    ):
        for size in sorted(section.get(mode, {}), key=int):
            r = section[mode][size]
            lines.append(
                f"| {label} | {int(size):,} | {r['server']} | {r['peak_rss_before_mib']:.1f} → "
                f"{r['peak_rss_after_mib']:.1f} | {r['peak_growth_mib']:.1f} | "
                f"{r['growth_bytes_per_request']:,.0f} | {r['rps']:,.0f} |"
            )
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    h2h = results.get("head_to_head")
    if h2h:
        # The verdicts read the head-to-head pairs (runs seconds apart, ABBA order), the estimate
        # least moved by the drift of a shared machine; the rotated rounds are shown below.
        cpu, rps = h2h["cpu_ratio"], h2h["rps_ratio"]
        pairs = f"median of {h2h['pairs']} back-to-back pairs"
        lines.append(
            f"| `send_activities` CPU/request ≤ {TARGET_CPU:.2f} x raw aiohttp (goal ≤ 1.00) "
            f"| {cpu:.3f} x ({pairs}) | {_verdict(cpu <= TARGET_CPU)} |"
        )
        lines.append(
            f"| `send_activities` throughput ≥ {TARGET_RPS:.2f} x raw aiohttp "
            f"| {rps:.3f} x ({pairs}) | {_verdict(rps >= TARGET_RPS)} |"
        )
    fanout = results.get("memory", {}).get("fanout", {})
    if fanout:
        largest = max(fanout, key=int)
        growth = fanout[largest]["peak_growth_mib"]
        lines.append(
            f"| {int(largest):,} streamed requests: peak RSS growth < {TARGET_MEMORY_MIB:.0f} MB "
            f"| {growth:.1f} MiB | {_verdict(growth * 1.048576 < TARGET_MEMORY_MIB)} |"
        )
    for storm in results.get("tokens", []):
        n = storm["token_requests_server"]
        lines.append(
            f"| token storm ({storm['scenario']}): token requests for {storm['calls']:,} calls = 1 "
            f"| {n} | {_verdict(n == 1)} |"
        )
    submit = results.get("batcher", {}).get("submit")
    if submit:
        rate = submit["unbounded"]["submits_per_second"]
        lines.append(
            f"| batcher `submit` ≥ {TARGET_SUBMITS:,.0f} activities/s (network not the bottleneck) "
            f"| {rate:,.0f}/s | {_verdict(rate >= TARGET_SUBMITS)} |"
        )
    return lines


def _batcher_tables(section: dict[str, Any]) -> list[str]:
    lines = [
        "| coalescing: 10 activities x 2,000 customers, interleaved | max_pending | requests | activities/request | flushes |",
        "|---|---:|---:|---:|---|",
    ]
    for r in section.get("coalesce", []):
        flushes = ", ".join(f"{k} {v}" for k, v in r["flushes"].items() if v)
        lines.append(
            f"| {r['activities']:,} activities | {r['max_pending']:,} | {r['requests']:,} "
            f"| {r['activities_per_request']:.2f} | {flushes} |"
        )
    submit = section.get("submit")
    if submit:
        lines += [
            "",
            "| submit rate, instant transport (200,000 activities, 2,000 customers) | submits/s | end-to-end activities/s | CPU µs/activity | activities/request |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("unbounded", "max_pending ≥ run (pure intake)"),
            ("default", "max_pending = 10,000 (paced by delivery)"),
        ):
            r = submit[key]
            lines.append(
                f"| {label} | {r['submits_per_second']:,.0f} | {r['end_to_end_per_second']:,.0f} "
                f"| {r['cpu_us_per_activity']:.1f} | {r['activities_per_request']:.1f} |"
            )
    if section.get("latency"):
        lines += [
            "",
            "| delivery latency (emulator) | max_latency | activities | activities/request | p50 | p90 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in section["latency"]:
            lat = r["latency"]
            lines.append(
                f"| {r['rate']:,.0f} activities/s over {r['customers']:,} customers "
                f"| {r['max_latency']} s | {r['activities']:,} | {r['activities_per_request']:.1f} "
                f"| {lat['p50'] * 1000:.0f} ms | {lat['p90'] * 1000:.0f} ms "
                f"| {lat['p99'] * 1000:.0f} ms | {lat['max'] * 1000:.0f} ms |"
            )
    return lines


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"_Generated {results.get('generated', '?')} by `python -m benchmarks` on {m['cpu']}, "
        f"{m['cores']} cores, {m['implementation']} {m['python']}, {m['os']}, aiohttp {m['aiohttp']}, "
        f"httpx {m['httpx']}, aiometer {m['aiometer']}, orjson {m['orjson']}, mxo-async {m['mxo_async']}; "
        f"malloc: {m.get('malloc', 'glibc defaults')}._",
        "",
        "### Targets",
        "",
        *_targets(results),
    ]
    h2h = results.get("head_to_head")
    if h2h:
        lines += [
            "",
            "### Head-to-head: `send_activities` vs raw aiohttp",
            "",
            f"Server: `{h2h['server']}`, {h2h['pairs']} pairs of fresh-process runs back to back "
            f"(order alternating), {h2h['requests']:,} requests each, {h2h['concurrency']} in "
            f"flight; {h2h['placement']}. Median client CPU: raw {h2h['raw_cpu_us']:.1f} µs, "
            f"`send_activities` {h2h['mxo_cpu_us']:.1f} µs per request; failures: "
            f"{h2h['failures']}.",
            "",
            "| ratio to raw, per pair (sorted) | median |",
            "|---|---:|",
            f"| CPU: {', '.join(f'{x:.2f}' for x in h2h['cpu_ratios'])} | {h2h['cpu_ratio']:.3f} |",
            f"| req/s: {', '.join(f'{x:.2f}' for x in h2h['rps_ratios'])} | {h2h['rps_ratio']:.3f} |",
        ]
    if "throughput" in results:
        lines += [
            "",
            "### Throughput and client CPU",
            "",
            *_throughput_table(results["throughput"]),
        ]
    for other in ("throughput_emulator", "throughput_lean"):
        if other in results:
            lines += ["", "Against the other server (one round):", ""]
            lines += _throughput_table(results[other])
    if results.get("memory"):
        lines += ["", "### Memory", "", *_memory_table(results["memory"])]
    if results.get("tokens"):
        lines += [
            "",
            "### Token storm",
            "",
            "| scenario | calls | token requests (server) | 401 replays | failures |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in results["tokens"]:
            lines.append(
                f"| {r['scenario']} | {r['calls']:,} | {r['token_requests_server']} "
                f"| {r['token_replays']} | {r['failures']} |"
            )
    if results.get("batcher"):
        lines += ["", "### Batcher", "", *_batcher_tables(results["batcher"])]
    return "\n".join(lines)


def write_readme(path: Path, results: dict[str, Any]) -> None:
    """Replace the text between the result markers of ``path`` with fresh tables."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")
