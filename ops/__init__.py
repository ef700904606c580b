"""Operator tooling: the `sutazai` CLI, the local supervisor and the benchmarks."""
