"""The per-stage timing protocol that pipelines implement so ``lanner bench`` can break
their latency down (preprocessing, each network, NMS/post-processing, other).

A pipeline opts in by exposing, after each call, the time its stages took *in that call*::

    class MyPipeline:
        def __init__(self):
            self.timer = StageTimer()

        @property
        def stage_times_ns(self) -> Mapping[str, int]:
            return self.timer.last

        def run(self, image):
            with self.timer.run():                  # starts a fresh record for this call
                with self.timer.stage("preprocess"):
                    x = prepare(image)
                with self.timer.stage("pnet"):
                    y = pnet(x)
                with self.timer.stage("nms"):
                    return nms(y)

Rules the benchmark relies on:

* ``stage_times_ns`` maps a stage name to integer nanoseconds spent in it during the most
  recent call only (a stage entered twice in one call, e.g. one network per pyramid scale,
  accumulates); stage names are free text, listed in first-seen order.
* Stages must not overlap; the benchmark reports ``other = total - sum(stages)`` (glue
  code, Python overhead), so a pipeline need not time everything.
* Reading ``stage_times_ns`` happens outside the timed region, and the timer itself costs
  two ``perf_counter_ns`` calls per stage (~100 ns).

Objects without ``stage_times_ns`` are timed as one block.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

#: Name of the derived remainder stage in reports.
OTHER = "other"


@runtime_checkable
class StagedPipeline(Protocol):
    """Anything with a ``stage_times_ns`` mapping describing its last call."""

    @property
    def stage_times_ns(self) -> Mapping[str, int]: ...


class StageTimer:
    """Accumulates per-stage wall time (``time.perf_counter_ns``) for one call at a time.

    ``last`` holds the stage times of the most recently *finished* call (a call is
    bracketed by :meth:`run`); stages timed outside :meth:`run` accumulate into the
    current record until the next :meth:`run` starts.
    """

    def __init__(self) -> None:
        self._current: dict[str, int] = {}
        self._running = False
        self.last: dict[str, int] = {}

    @contextmanager
    def run(self) -> Iterator[None]:
        """Bracket one pipeline call: starts a fresh record, publishes it as ``last``."""
        self._current, self._running = {}, True
        try:
            yield
        finally:
            self._running = False
            self.last = self._current

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to stage ``name`` of the current call.

        Args:
            name: the stage name (e.g. ``"preprocess"``, ``"pnet"``, ``"nms"``).

        Raises:
            ValueError: if ``name`` is empty or is the reserved ``"other"``.
        """
        if not name or name == OTHER:
            raise ValueError(f"stage name must be non-empty and not {OTHER!r}, got {name!r}")
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self._current[name] = self._current.get(name, 0) + time.perf_counter_ns() - t0
            if not self._running:
                self.last = self._current
