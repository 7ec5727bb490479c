"""Run Python code in a subprocess where some packages cannot be imported (a meta-path blocker),
to prove that a code path does not need them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping

_PRELUDE = """
import importlib.abc, sys
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def run_without(
    blocked: Iterable[str], code: str, *, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which importing any of ``blocked`` (or a submodule)
    raises ModuleNotFoundError. Returns the completed process (stdout/stderr as text)."""
    script = _PRELUDE.format(blocked=sorted(set(blocked))) + code
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
