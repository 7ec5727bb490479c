"""The interface every backend session implements."""

from __future__ import annotations

import abc

import numpy as np

__all__ = ["Session", "check_declared_inputs"]


def check_declared_inputs(declared, actual: list[tuple[str, list[int | None]]], where: str) -> None:
    """Check that a package's model has the inputs its manifest declares (the manifest is not checksummed: an
    edited shape loaded, and ``run`` then blamed the caller's correctly shaped input).

    Args:
        declared: the manifest's input :class:`~lanner.manifest.TensorSpec` s.
        actual: ``(name, dims)`` of the model's inputs, a dim None where the model leaves it dynamic.
        where: the artifact, for the message.

    Raises:
        PackageError: other names, another rank, or a fixed size the model fixes otherwise.
    """
    from ..manifest import PackageError

    model = dict(actual)
    names = [spec.name for spec in declared]
    if sorted(names) != sorted(model):
        raise PackageError(f"{where}: the manifest declares inputs {names}, the model has {sorted(model)}")
    for spec in declared:
        dims = model[spec.name]
        fixed_apart = any(isinstance(d, int) and m is not None and d != m for d, m in zip(spec.shape, dims))
        if len(dims) != len(spec.shape) or fixed_apart:
            raise PackageError(
                f"{where}: the manifest declares input {spec.name!r} of shape {tuple(spec.shape)}, "
                f"the model's is {tuple('?' if m is None else m for m in dims)}"
            )


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
