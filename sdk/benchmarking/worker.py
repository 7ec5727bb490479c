"""Fresh-process runner for one variant: ``python -m lanner.benchmarking.worker``.

Reads one :class:`~lanner.benchmarking.variants.VariantJob` as JSON on stdin and writes
JSON lines on its original stdout: ``{"event": "progress", "label", "done", "total"}``
while timing, then one ``{"event": "result", "entry": {...}}``. Anything the backends
print goes to stderr (fd 1 is redirected there), so the protocol stream stays clean.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries printing to stdout now land on stderr
    sys.stdout = sys.stderr
    from .variants import VariantJob, run_variant

    job = VariantJob.from_dict(json.loads(sys.stdin.read()))
    last = [-1]

    def progress(label: str, done: int, total: int) -> None:
        step = max(1, total // 50)
        if done == 1 or done == total or done - last[0] >= step:
            last[0] = done
            proto.write(json.dumps({"event": "progress", "label": label, "done": done, "total": total}) + "\n")

    entry = run_variant(job, progress)
    proto.write(json.dumps({"event": "result", "entry": entry}) + "\n")
    proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
