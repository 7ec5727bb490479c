"""OpenVINO adapter: the only module that imports ``openvino``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Session, check_declared_inputs
from .telemetry import decline_openvino_telemetry

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..targets import Target

__all__ = ["import_toolchain", "toolchain_versions", "open_session", "compile_options", "OpenVINOSession"]


def import_toolchain() -> ModuleType:
    """Import OpenVINO.

    Raises:
        ImportError: OpenVINO is not installed (``pip install openvino``).
    """
    decline_openvino_telemetry()  # before the import: `import openvino` reports usage otherwise
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


class OpenVINOSession(Session):
    """An OpenVINO compiled model on the CPU plugin."""

    def __init__(self, core: Any, model: Any, output_names: list[str], config: dict[str, Any]) -> None:
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._pool: list[Any] = []  # extra requests for run_many, one per input, grown on demand
        by_name = {}
        for port in self._compiled.outputs:
            for name in port.get_names():
                by_name[name] = port
        missing = [n for n in output_names if n not in by_name]
        if missing:
            raise ValueError(f"OpenVINO model has no outputs named {missing}; it has {sorted(by_name)}")
        self._ports = [by_name[n] for n in output_names]

    @property
    def inference_precision(self) -> str:
        """The precision the CPU plugin actually executes in (e.g. ``"f32"``, ``"bf16"``)."""
        return str(self._compiled.get_property("INFERENCE_PRECISION_HINT")).lower().replace("<type: '", "").rstrip("'>")

    def run(self, inputs: dict[str, np.ndarray], copy: bool = True) -> list[np.ndarray]:
        # Inputs are C-contiguous (lanner.Model validates them) and the call is synchronous, so
        # the plugin may read them in place; outputs are copied because the request is reused,
        # unless the caller takes read-only views valid until the next run.
        return self._infer(self._request, inputs, copy)

    def run_many(self, inputs: list[dict[str, np.ndarray]], copy: bool = True) -> list[list[np.ndarray]]:
        # One request per input, so that every input's outputs stay valid until the next call.
        while len(self._pool) < len(inputs):
            self._pool.append(self._compiled.create_infer_request())
        return [self._infer(request, feed, copy) for request, feed in zip(self._pool, inputs)]

    def _infer(self, request: Any, inputs: dict[str, np.ndarray], copy: bool) -> list[np.ndarray]:
        result = request.infer(inputs, share_inputs=True, share_outputs=not copy)
        if copy:
            return [np.array(result[port], copy=True) for port in self._ports]
        views = [result[port] for port in self._ports]
        for view in views:
            view.flags.writeable = False
        return views

    def close(self) -> None:
        self._request = None
        self._pool = []
        self._compiled = None


def open_session(package_dir: Path, manifest: Manifest, target: Target, num_threads: int | None) -> OpenVINOSession:
    """Load ``model.xml``/``model.bin`` from a package on the CPU plugin."""
    if target.device != "cpu":
        raise ValueError(f"the OpenVINO backend runs on CPU targets only, the package targets {target.name!r}")
    core = import_toolchain().Core()
    xml = str(manifest.artifact_path(package_dir, "model"))
    model = core.read_model(xml, str(manifest.artifact_path(package_dir, "weights")))
    declared = {spec.name for spec in manifest.inputs}
    actual = [
        (
            next((n for n in sorted(port.get_names()) if n in declared), port.get_any_name()),  # a port has aliases
            [d.get_length() if d.is_static else None for d in port.get_partial_shape()],
        )
        for port in model.inputs
    ]
    check_declared_inputs(manifest.inputs, actual, xml)
    config = compile_options(manifest.backend_options.get("inference_precision"), num_threads)
    return OpenVINOSession(core, model, [o.name for o in manifest.outputs], config)
