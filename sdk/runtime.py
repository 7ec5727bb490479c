"""Load and run a deployable package built by ``lanner.compile``.

Example::

    import lanner
    with lanner.load("out/face_cls") as model:
        print(model.inputs)               # (TensorSpec(name='image', shape=('batch', 3, 112, 112), dtype='float32'),)
        scores = model.run({"image": batch})["logits"]

Only the backend the package needs is imported (OpenVINO, ONNX Runtime, or TVM).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._resources import Closeable, check_num_threads
from .backends import Session, adapter
from .manifest import Manifest, PackageError, TensorSpec
from .targets import get_target

__all__ = ["load", "Model"]


def load(package_dir: str | os.PathLike[str], *, num_threads: int | None = None) -> Model:
    """Load a package: verify it, check it runs here, and open its backend.

    Args:
        package_dir: a directory written by ``lanner.compile.compile_model``.
        num_threads: CPU threads for inference (None = the backend's default, one per core; a tuned TVM
            package's default is the count it was tuned with). A TVM package on a CPU uses fewer threads
            than this where fewer were measured at least 10% faster when it was compiled (its manifest's
            ``latency_ms.by_threads``; :func:`lanner.backends.tvm_backend.fastest_threads`).

    Returns:
        A :class:`Model` (a context manager; ``close()`` releases the backend).

    Raises:
        FileNotFoundError: no such directory, or no ``manifest.json`` in it.
        PackageError (a ValueError): malformed manifest, checksum mismatch, or a package built for
            another target (e.g. a Jetson package on x86).
        ValueError: ``num_threads`` is not in [1, 256].
        TypeError: ``num_threads`` is not an int.
        ImportError: the backend's toolchain is missing (TVM packages need ``lanner[compile]``).
    """
    return Model.open(package_dir, num_threads=num_threads)


class Model(Closeable):
    """A loaded package. Create with :func:`lanner.load` (or :meth:`Model.open`).

    Thread safety: a Model may be shared between threads; :meth:`run` and :meth:`run_many`
    calls are serialised (one at a time per Model: the backend's request is reused). Views
    returned with ``copy=False`` are overwritten by the next call from any thread, so threads
    that share a Model should keep the default ``copy=True``.

    Attributes:
        manifest: the package's :class:`~lanner.manifest.Manifest`.
        inputs: input specs (name, shape with None/str for dynamic axes, dtype), in order.
        outputs: output specs, in order.
    """

    def __init__(self, package_dir: Path, manifest: Manifest, session: Session) -> None:
        self.package_dir = package_dir
        self.manifest = manifest
        self.inputs: tuple[TensorSpec, ...] = manifest.inputs
        self.outputs: tuple[TensorSpec, ...] = manifest.outputs
        self._session: Session | None = session
        self._lock = threading.Lock()

    @classmethod
    def open(cls, package_dir: str | os.PathLike[str], *, num_threads: int | None = None) -> Model:
        """Same as :func:`lanner.load`."""
        num_threads = check_num_threads(num_threads)
        root = Path(package_dir)
        manifest = Manifest.read(root)
        target = _target_or_error(manifest.target)
        ok, reason = target.runnable_here()
        if not ok:
            raise PackageError(reason)
        manifest.verify(root)
        try:
            session = adapter(manifest.backend).open_session(root, manifest, target, num_threads)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - each backend's own error types: a manifest at odds with its files
            raise PackageError(
                f"{root}: the {manifest.backend} backend cannot open this package's model "
                f"({f'{type(exc).__name__}: {exc}'.splitlines()[0][:300]}); the manifest does not describe its files"
            ) from None
        return cls(root, manifest, session)

    # -- inference ---------------------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray], *, copy: bool = True) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            inputs: one array per input name; shapes must match the specs (any size on dynamic
                axes, equal sizes on axes that share a name) and dtypes must match exactly.
            copy: False lets a backend return read-only views of its own output buffers
                (OpenVINO does), valid until the next ``run`` or :meth:`run_many`: for a caller
                that consumes the outputs at once and wants to skip the copy.

        Returns:
            ``{output name: array}`` in the spec order.

        Raises:
            ValueError: wrong/missing input names, shapes or dtypes (the message names expected
                vs actual), NaN or infinite values in a floating-point input (every backend
                refuses them alike), or the model was closed.
            TypeError: an input is not a NumPy array.
        """
        feed = self._validate(inputs)
        with self._lock:
            return self._named(self._open_session().run(feed, copy=copy))

    def run_many(self, inputs: Sequence[Mapping[str, np.ndarray]], *, copy: bool = True) -> list[dict[str, np.ndarray]]:
        """Run the model on several inputs (of any sizes the specs allow) back to back.

        Same result as ``[run(x) for x in inputs]``. A backend may run them without returning
        to Python in between and, with ``copy=False``, hand back read-only views of one output
        buffer set per input (OpenVINO keeps one infer request per input), valid until the next
        ``run`` or ``run_many``: cheaper than running, copying and post-processing one at a
        time (MTCNN's P-Net runs its pyramid levels this way).

        Raises:
            ValueError, TypeError: as :meth:`run`, for any of the inputs.
        """
        self._open_session()
        if isinstance(inputs, Mapping) or not isinstance(inputs, Sequence):
            raise TypeError(f"inputs must be a sequence of dicts of name -> numpy array, got {type(inputs).__name__}")
        feeds = [self._validate(x) for x in inputs]
        with self._lock:
            return [self._named(outputs) for outputs in self._open_session().run_many(feeds, copy=copy)]

    _closed_message = "this model is closed; load the package again"

    def _open_session(self) -> Session:
        self._ensure_open()
        session = self._session
        if session is None:
            raise ValueError(self._closed_message)
        return session

    def _named(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {spec.name: out for spec, out in zip(self.outputs, outputs)}

    def _validate(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict of name -> numpy array, got {type(inputs).__name__}")
        expected = [s.name for s in self.inputs]
        if set(inputs) != set(expected):
            raise ValueError(f"expected inputs {expected}, got {sorted(inputs)}")
        named: dict[str, int] = {}
        feed = {}
        for spec in self.inputs:
            array = inputs[spec.name]
            if not isinstance(array, np.ndarray):
                raise TypeError(f"input {spec.name!r} must be a numpy.ndarray, got {type(array).__name__}")
            if array.dtype != np.dtype(spec.dtype):
                raise ValueError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {array.dtype}")
            if array.ndim != len(spec.shape):
                raise ValueError(
                    f"input {spec.name!r}: expected {len(spec.shape)}-d shape {_fmt(spec.shape)}, "
                    f"got {array.ndim}-d {tuple(array.shape)}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
                if isinstance(want, int) and want != got:
                    raise ValueError(
                        f"input {spec.name!r}: expected shape {_fmt(spec.shape)}, got {tuple(array.shape)} "
                        f"(axis {axis} must be {want})"
                    )
                if isinstance(want, str):
                    if named.setdefault(want, got) != got:
                        raise ValueError(
                            f"input {spec.name!r}: axis {axis} ({want!r}) is {got} but another input has "
                            f"{want!r} = {named[want]}"
                        )
                if got == 0:
                    raise ValueError(f"input {spec.name!r}: axis {axis} is empty, shape {tuple(array.shape)}")
            if array.dtype.kind == "f" and not _all_finite(array):
                bad = int(np.count_nonzero(~np.isfinite(array)))
                raise ValueError(
                    f"input {spec.name!r}: expected finite values, got {bad} NaN or infinite value(s) of {array.size}"
                )
            feed[spec.name] = np.ascontiguousarray(array)
        return feed

    # -- resources ---------------------------------------------------------------------
    def _release(self) -> None:
        with self._lock:  # a run in another thread finishes first
            session, self._session = self._session, None
            if session is not None:
                session.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"Model({m.name!r}, target={m.target!r}, backend={m.backend!r}, precision={m.precision!r})"


def _all_finite(array: np.ndarray) -> bool:
    """True when no value is NaN or infinite. One pass at memory speed (~0.4 ns a value): the sum
    is finite when every value is; only a non-finite sum (also from an overflow of large finite
    values) is confirmed value by value."""
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(array.sum())):
            return True
    return bool(np.isfinite(array).all())


def _target_or_error(name: str):
    """The manifest's target, or a PackageError naming the unknown target."""
    try:
        return get_target(name)
    except ValueError as exc:
        raise PackageError(f"package manifest names {exc}") from None


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
