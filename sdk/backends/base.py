"""The interface every backend session implements."""
from __future__ import annotations

import abc

import numpy as np

__all__ = ["Session"]


class Session(abc.ABC):
    """A loaded artifact ready to run. Inputs arrive validated by :class:`lanner.Model`."""

    @abc.abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once.

        Args:
            inputs: one C-contiguous array per model input, keyed by name.

        Returns:
            The outputs in the manifest's output order.
        """

    def close(self) -> None:
        """Release the backend's resources (idempotent)."""
