"""Benchmarks: `python -m bench NAME [--quick]`; each writes bench/results/NAME.json."""
