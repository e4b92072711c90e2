"""Checks run by hand or by ``tools/gpu_check.sh`` (numerical margins, GPU Engine agreement, full-size exports).
Run one from the repository root: ``python -m checks NAME [--help]``."""
