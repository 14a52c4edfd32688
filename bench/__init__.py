"""Benchmarks of the seat inventory: load generators, harnesses and the `bench.run` command."""
