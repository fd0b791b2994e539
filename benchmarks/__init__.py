"""Benchmark suite: HTTP load against `python -m service` and its baselines (`python -m
benchmarks`)."""
