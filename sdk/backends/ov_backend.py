"""OpenVINO adapter: the only module that imports ``openvino``."""
from __future__ import annotations

from collections import OrderedDict, deque
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Session

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..targets import Target

__all__ = ["import_toolchain", "toolchain_versions", "open_session", "compile_options", "OpenVINOSession"]

# A shape must arrive this many times before it gets its own static compiled model: a one-off
# shape (a single photo) never pays the compile, a repeating one (video frames) does once.
_STATIC_AFTER_CALLS = 2
# Infer requests kept in flight by run_many (two: enough to overlap one request's idle time on
# the 2-core machines we target; more only queue up).
_IN_FLIGHT = 2


def import_toolchain() -> ModuleType:
    """Import OpenVINO.

    Raises:
        ImportError: OpenVINO is not installed (``pip install openvino``).
    """
    try:
        import openvino
    except ImportError as exc:  # pragma: no cover - it is a runtime dependency
        raise ImportError("the OpenVINO backend needs the openvino package: pip install openvino") from exc
    return openvino


def toolchain_versions() -> dict[str, str]:
    """Versions of the toolchain packages (recorded in manifests)."""
    return {"openvino": import_toolchain().get_version()}


def compile_options(precision_hint: str | None, num_threads: int | None) -> dict[str, Any]:
    """The CPU plugin configuration for a precision hint (``"f32"``, ``"f16"``, ``"bf16"``; None = plugin default)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = int(num_threads)
    return config


class _Compiled:
    """One compiled model with its infer requests and output ports (in manifest order)."""

    def __init__(self, core: Any, model: Any, output_names: list[str], config: dict[str, Any]) -> None:
        self.compiled = core.compile_model(model, "CPU", config)
        self.requests = [self.compiled.create_infer_request()]
        by_name = {}
        for port in self.compiled.outputs:
            for name in port.get_names():
                by_name[name] = port
        missing = [n for n in output_names if n not in by_name]
        if missing:
            raise ValueError(f"OpenVINO model has no outputs named {missing}; it has {sorted(by_name)}")
        self.ports = [by_name[n] for n in output_names]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        # Inputs are C-contiguous (lanner.Model validates them) and the call is synchronous, so
        # the plugin may read them in place; outputs are copied because the request is reused.
        result = self.requests[0].infer(inputs, share_inputs=True)
        return [np.array(result[port], copy=True) for port in self.ports]

    def idle_request(self, busy: set[int]) -> Any:
        """An infer request of this model that is not in ``busy`` (ids), created when all are."""
        for request in self.requests:
            if id(request) not in busy:
                return request
        self.requests.append(self.compiled.create_infer_request())
        return self.requests[-1]

    def outputs_of(self, request: Any) -> list[np.ndarray]:
        return [np.array(request.get_tensor(port).data, copy=True) for port in self.ports]


class OpenVINOSession(Session):
    """An OpenVINO compiled model on the CPU plugin.

    With ``static_shape_cache > 0`` and a model with dynamic input axes, every input shape seen
    ``_STATIC_AFTER_CALLS`` times gets its own copy of the model reshaped to that static shape
    and compiled (least recently used copies beyond ``static_shape_cache`` are dropped). The CPU
    plugin plans kernels and memory once for a static shape instead of on every shape change,
    which pays off where a few shapes repeat (MTCNN's pyramid levels on video frames); the
    price is one compile (~0.1-0.2 s for a small CNN) per shape. Results are the same network.
    """

    def __init__(self, core: Any, model: Any, output_names: list[str], config: dict[str, Any],
                 static_shape_cache: int = 0) -> None:
        self._core, self._model, self._output_names, self._config = core, model, output_names, config
        self._dynamic = _Compiled(core, model, output_names, config)
        self._compiled = self._dynamic.compiled
        has_dynamic_axes = any(port.get_partial_shape().is_dynamic for port in model.inputs)
        self._cache_size = int(static_shape_cache) if has_dynamic_axes else 0
        self._static: OrderedDict[tuple, _Compiled] = OrderedDict()
        self._seen: dict[tuple, int] = {}

    @property
    def inference_precision(self) -> str:
        """The precision the CPU plugin actually executes in (e.g. ``"f32"``, ``"bf16"``)."""
        return str(self._compiled.get_property("INFERENCE_PRECISION_HINT")).lower().replace("<type: '", "").rstrip("'>")

    @property
    def static_shapes(self) -> list[tuple]:
        """The input shapes that currently have a static compiled copy (least recently used first)."""
        return list(self._static)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._dynamic is None:
            raise ValueError("this OpenVINO session is closed")
        return self._for_shapes(inputs).run(inputs)

    def run_many(self, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """Run independent feeds with up to ``_IN_FLIGHT`` infer requests at once.

        One request's threads stall on small inputs (a small pyramid level, half a batch of
        crops) and, on a shared machine, on any core another process holds; a second request in
        flight fills those gaps. Results are those of :meth:`run`, in feed order.
        """
        if self._dynamic is None:
            raise ValueError("this OpenVINO session is closed")
        results: list[list[np.ndarray] | None] = [None] * len(feeds)
        in_flight: deque[tuple[int, _Compiled, Any]] = deque()

        def collect() -> None:
            index, compiled, request = in_flight.popleft()
            request.wait()
            results[index] = compiled.outputs_of(request)

        for index, feed in enumerate(feeds):
            if len(in_flight) >= _IN_FLIGHT:
                collect()
            compiled = self._for_shapes(feed)
            request = compiled.idle_request({id(r) for _, _, r in in_flight})
            # The caller keeps ``feed`` alive until we return, so the plugin may read it in place.
            request.start_async(feed, share_inputs=True)
            in_flight.append((index, compiled, request))
        while in_flight:
            collect()
        return results  # type: ignore[return-value]

    def _for_shapes(self, inputs: dict[str, np.ndarray]) -> _Compiled:
        if not self._cache_size:
            return self._dynamic
        key = tuple(sorted((name, array.shape) for name, array in inputs.items()))
        hit = self._static.get(key)
        if hit is not None:
            self._static.move_to_end(key)
            return hit
        count = self._seen.get(key, 0) + 1
        if count < _STATIC_AFTER_CALLS:
            if len(self._seen) >= 8 * self._cache_size:  # bound the bookkeeping on ever-new shapes
                self._seen.clear()
            self._seen[key] = count
            return self._dynamic
        self._seen.pop(key, None)
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in key})
        static = _Compiled(self._core, model, self._output_names, self._config)
        self._static[key] = static
        while len(self._static) > self._cache_size:
            self._static.popitem(last=False)
        return static

    def close(self) -> None:
        self._dynamic = None
        self._compiled = None
        self._static.clear()
        self._seen.clear()


def open_session(package_dir: Path, manifest: "Manifest", target: "Target", num_threads: int | None,
                 *, static_shape_cache: int = 0) -> OpenVINOSession:
    """Load ``model.xml``/``model.bin`` from a package on the CPU plugin.

    Args:
        static_shape_cache: how many static-shape compiled copies to keep for models with
            dynamic input axes (see :class:`OpenVINOSession`); 0 = always the dynamic model.
    """
    if target.device != "cpu":
        raise ValueError(f"the OpenVINO backend runs on CPU targets only, the package targets {target.name!r}")
    core = import_toolchain().Core()
    model = core.read_model(str(manifest.artifact_path(package_dir, "model")),
                            str(manifest.artifact_path(package_dir, "weights")))
    config = compile_options(manifest.backend_options.get("inference_precision"), num_threads)
    return OpenVINOSession(core, model, [o.name for o in manifest.outputs], config, static_shape_cache)
