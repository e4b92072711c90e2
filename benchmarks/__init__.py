"""Benchmarks and measurements of zsseg_rt (speed and memory against the PyTorch equivalent, measured in the same
run; results in BENCHMARKS.md). Run one from the repository root: ``python -m benchmarks NAME [--help]``."""
