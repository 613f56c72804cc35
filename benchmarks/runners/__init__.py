"""Benchmark runners: each is run as ``python -m benchmarks.runners.<name>`` in its own process."""
