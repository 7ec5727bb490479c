"""The interface every backend session implements."""

from __future__ import annotations

import abc

import numpy as np

__all__ = ["Session"]


class Session(abc.ABC):
    """A loaded artifact ready to run. Inputs arrive validated by :class:`lanner.Model`."""

    @abc.abstractmethod
    def run(self, inputs: dict[str, np.ndarray], copy: bool = True) -> list[np.ndarray]:
        """Run once.

        Args:
            inputs: one C-contiguous array per model input, keyed by name.
            copy: False allows returning read-only views of the backend's own output
                buffers, valid until the next run (a backend may return fresh arrays anyway).

        Returns:
            The outputs in the manifest's output order.
        """

    def run_many(self, inputs: list[dict[str, np.ndarray]], copy: bool = True) -> list[list[np.ndarray]]:
        """Run once per input, back to back; outputs per input as :meth:`run`'s. Views (with
        ``copy=False``) must stay valid until the next run, so a backend that reuses output
        buffers needs one set per input; this default copies."""
        return [self.run(feed, copy=True) for feed in inputs]

    def close(self) -> None:  # noqa: B027  (a backend without resources to free keeps this no-op)
        """Release the backend's resources (idempotent)."""
