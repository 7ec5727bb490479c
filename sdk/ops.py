"""Native ops from ``lanner._C`` with documented shapes and NumPy-friendly signatures."""
from __future__ import annotations

from . import _C

__all__ = ["has_cuda"]


def has_cuda() -> bool:
    """Return True when the CUDA kernels were built and a CUDA device is usable.

    Returns:
        False when ``lanner._C`` was built without nvcc, or no driver/device is present.
    """
    return bool(_C.built_with_cuda) and _C.cuda_device_count() > 0
