"""Benchmarks: `python -m bench` (see bench/README.md). Every figure held to a target is measured side by side."""
