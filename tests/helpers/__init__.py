"""Helpers the tests and the benchmarks share (no pytest imports: `benchmarks/*.py` use them too)."""
