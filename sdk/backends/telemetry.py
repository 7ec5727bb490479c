"""Lanner makes no network connection at run time: the toolchains' usage telemetry is turned off
here, before they are imported. The one place that does it; :mod:`lanner.backends` calls
:func:`disable_env_telemetry` on import and the adapters call the per-toolchain switches just
before they import their toolchain.

* ONNX Runtime (1.2x+ on Linux) starts a 1DS telemetry uploader when its library loads and
  writes a device id under ``~/.cache/Microsoft/DeveloperTools``; the environment variable it
  reads (``ORT_DISABLE_TELEMETRY``; newer releases document ``ORT_TELEMETRY_DISABLED``) must be
  set before that. ``onnxruntime.disable_telemetry_events()`` then turns off the usage events.
* OpenVINO sends a Google Analytics event on ``import openvino`` (through
  ``openvino_telemetry``) and writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` unless
  the user declined (``opt_in_out --opt_out``, which writes the consent file
  ``~/intel/openvino_telemetry``). Lanner declines for its own process, in memory: the consent
  check answers "declined" without reading or writing any file, so nothing is sent or written
  and the user's own consent file (for other tools) is left as it is. NNCF reports through the
  same package and is covered too.

A toolchain imported by the application *before* Lanner has already made its choice; import
Lanner first (or set the switches yourself) to be sure.
"""

from __future__ import annotations

import os

__all__ = ["disable_env_telemetry", "decline_openvino_telemetry", "disable_onnxruntime_events"]

# Environment switches read by native libraries when they load; values as their docs give them.
_ENV_SWITCHES = {"ORT_DISABLE_TELEMETRY": "1", "ORT_TELEMETRY_DISABLED": "1"}


def disable_env_telemetry() -> None:
    """Set the toolchains' telemetry opt-out environment variables (a value the user set stays)."""
    for name, value in _ENV_SWITCHES.items():
        os.environ.setdefault(name, value)


def decline_openvino_telemetry() -> None:
    """Answer OpenVINO's telemetry consent check with "declined" in this process (no file is read
    or written). Call before ``import openvino``; a no-op without ``openvino_telemetry``."""
    try:
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:
        return
    declined = opt_in_checker.ConsentCheckResult.DECLINED

    def check(self: object, *args: object, **kwargs: object) -> object:
        return declined

    opt_in_checker.OptInChecker.check = check  # type: ignore[method-assign]


def disable_onnxruntime_events(onnxruntime: object) -> None:
    """Turn off ONNX Runtime's telemetry events (after import; the environment did the rest)."""
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
