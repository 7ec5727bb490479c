"""What a backend builder returns, and the error for unsupported combinations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BuildResult", "UnsupportedError"]


class UnsupportedError(ValueError):
    """This backend cannot build this precision for this target (the message says why and what to use)."""


@dataclass(frozen=True)
class BuildResult:
    """Artifacts a builder wrote into the package directory.

    Attributes:
        artifacts: role -> path relative to the package (e.g. ``{"model": "model.xml", "weights": "model.bin"}``).
        backend_options: what the loader passes to the backend (recorded in the manifest).
        target_info: target details (TVM target dict, CUDA arch, host triple ...).
        toolchain: package -> version used to build.
        notes: free-form remarks recorded in the manifest (e.g. how INT8 was calibrated).
    """

    artifacts: Mapping[str, str]
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    target_info: Mapping[str, Any] = field(default_factory=dict)
    toolchain: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)
