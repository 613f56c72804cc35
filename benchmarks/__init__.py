"""Benchmarks for mxo_async (not tests: run with ``python -m benchmarks`` or ``nox -s bench``)."""
