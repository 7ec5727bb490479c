"""A TVM RPC tracker and server on 127.0.0.1, and the process-group bookkeeping that ends them:
used by the RPC tests and by ``benchmarks/compile/bench_cuda.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def wait_group_empty(pgid: int, seconds: float = 10) -> list[int]:
    """Wait up to ``seconds`` for process group ``pgid`` to empty; return its members still alive."""
    deadline = time.monotonic() + seconds
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return group_members(pgid)


def end_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> list[int]:
    """Signal ``proc``'s process group (it was started with ``start_new_session=True``), reap it,
    and return the group's members still alive after 10 s (orphans, e.g. TVM's popen_worker)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = wait_group_empty(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@contextlib.contextmanager
def rpc_loopback(key: str) -> Iterator[str]:
    """A TVM RPC tracker and one server registered under ``key``, both on 127.0.0.1; yields the
    tracker's address and checks on exit that neither left a process behind."""
    from lanner.benchmarking.remote import check_tracker

    port = free_port()
    address = f"127.0.0.1:{port}"
    tracker = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1"]
    server = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--tracker", address]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([*tracker, "--port", str(port), "--port-end", str(port + 1)], **quiet)]
    try:
        time.sleep(5)
        procs.append(subprocess.Popen([*server, "--key", key], **quiet))
        deadline = time.monotonic() + 120
        while True:
            try:
                check_tracker(address, key)
                break
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        # Each runs its server loop in a TVM popen_worker child, which outlives a terminate() of its
        # parent alone (two such orphans were left by the RPC test): end whole process groups.
        left = [pid for p in procs for pid in end_group(p)]
    assert left == [], f"processes of the tracker or server outlived their use: {left}"
