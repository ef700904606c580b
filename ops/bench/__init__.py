"""Benchmark commands; each prints one JSON document (docs/benchmarks.md records the numbers)."""
