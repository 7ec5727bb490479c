"""Measure a TVM package on a remote device over TVM RPC.

The device runs ``python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090`` (only the
TVM runtime is needed there). We upload the package's shared library, load it into a
Relax VM on the remote device (``relax.VirtualMachine(remote.load_module(lib), remote.cpu())``),
set the inputs once, and time ``invoke_stateful("main")`` with the remote
``time_evaluator`` (``number=1``: one sample per call, timed on the device, so network
latency is excluded). Cold start here is upload + load + first call as seen by the host.

TVM is reached through :mod:`lanner.backends.tvm_backend` (the one module importing TVM).
The RPC server is trusted code execution: use it on trusted networks only.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..timing import LatencyStats, RunPolicy
from .machine import machine_info
from .report import SCHEMA_VERSION, new_entry, validate_report
from .variants import SAMPLE_DECIMALS, _stage_summary, dir_size_bytes, make_inputs, package_metadata

RPC_SESSION_TIMEOUT_S = 600
TRACKER_CONNECT_TIMEOUT_S = 5.0  # an unreachable tracker fails fast instead of TVM's minute of retries


def parse_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT``.

    Raises:
        ValueError: not ``HOST:PORT`` with a port in 1..65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--rpc expects HOST:PORT (e.g. 192.168.1.20:9090), got {address!r}")
    return host, int(port)


def check_tracker(address: str, device_key: str, *, timeout_s: float = TRACKER_CONNECT_TIMEOUT_S) -> None:
    """Check that a TVM RPC tracker answers at ``address`` and has a device under ``device_key``.

    Used before tuning over RPC (``lanner compile --tune --rpc``): MetaSchedule's RPC runner
    then reaches the device through the same tracker.

    Args:
        address: ``HOST:PORT`` of ``python -m tvm.exec.rpc_tracker``.
        device_key: the key the device's ``rpc_server --tracker ... --key KEY`` registered.
        timeout_s: give up connecting after this long.

    Raises:
        ValueError: bad address, nothing answering there within ``timeout_s``, or no device
            registered under ``device_key`` (the message lists the keys the tracker has).
    """
    from ..backends.tvm_backend import import_toolchain

    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ValueError(f"cannot reach a TVM RPC tracker at {address} within {timeout_s:g} s: {exc}") from None
    tvm = import_toolchain()
    try:
        summary = tvm.rpc.connect_tracker(host, port).summary()
    except Exception as exc:  # noqa: BLE001 -- TVM raises its own error types for protocol failures
        raise ValueError(f"{address} does not answer as a TVM RPC tracker: {exc}".splitlines()[0]) from None
    keys = sorted(summary.get("queue_info", {}))
    if device_key not in keys:
        raise ValueError(
            f"the TVM RPC tracker at {address} has no device under key {device_key!r} (keys: {keys or 'none'}); "
            f"start one with: python -m tvm.exec.rpc_server --tracker {address} --key {device_key}"
        )


def bench_rpc_package(
    package_dir: str,
    address: str,
    *,
    policy: RunPolicy,
    batches: tuple[int, ...] = (1,),
    seed: int = 0,
    shapes: dict[str, tuple[int, ...]] | None = None,
    connect_timeout_s: float = 30.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Upload a TVM package to an RPC server and time it there.

    Args:
        package_dir: a TVM package (``backend == "tvm"``).
        address: ``HOST:PORT`` of ``tvm.exec.rpc_server``.
        policy: warm-up and run-count policy (the adaptive count uses the warm-up mean).
        batches: batch sizes (the package's batch axis must allow them).
        seed: input seed.
        shapes: overrides for dynamic input dims.
        connect_timeout_s: give up connecting after this long.
        progress: ``progress(label, done, total)`` per batch.

    Returns:
        A variant entry of the report schema with ``kind="rpc"``; memory is not measured.

    Raises:
        ValueError: not a TVM package, bad address, or the server is unreachable.
        FileNotFoundError: no such package.
    """
    from ..backends.tvm_backend import import_toolchain
    from ..manifest import Manifest

    host, port = parse_address(address)
    root = Path(package_dir)
    manifest = Manifest.read(root)
    if manifest.backend != "tvm":
        raise ValueError(
            f"--rpc runs TVM packages only; {package_dir} is a {manifest.backend} package "
            f"(compile with --backend tvm for the device's target)"
        )
    manifest.verify(root)
    library = manifest.artifact_path(root, "library")
    tvm = import_toolchain()
    entry = {**new_entry(root.resolve().name, "rpc", str(package_dir)), **package_metadata(root, manifest)}
    entry["artifact_bytes"] = dir_size_bytes(root)

    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + connect_timeout_s
    while True:
        try:
            remote = tvm.rpc.connect(host, port, session_timeout=RPC_SESSION_TIMEOUT_S)
            break
        except Exception as exc:  # noqa: BLE001 -- TVM raises its own error types for refused connections
            if time.monotonic() > deadline:
                raise ValueError(f"cannot reach a TVM RPC server at {address}: {exc}".splitlines()[0]) from None
            time.sleep(0.2)
    connect_ns = time.perf_counter_ns() - t0
    t1 = time.perf_counter_ns()
    # A bytearray, not the path: TVM's upload(path) leaves the file open (a ResourceWarning).
    remote.upload(bytearray(library.read_bytes()), target=library.name)
    upload_ns = time.perf_counter_ns() - t1
    t2 = time.perf_counter_ns()
    rmod = remote.load_module(library.name)
    from ..targets import get_target

    dev = remote.cuda(0) if get_target(manifest.target).device == "cuda" else remote.cpu(0)
    vm = tvm.relax.VirtualMachine(rmod, dev)
    load_ns = time.perf_counter_ns() - t2
    rng = np.random.default_rng(seed)
    batches_out: list[dict[str, Any]] = []
    cold = None
    for batch in batches:
        try:
            feeds = make_inputs(manifest.inputs, batch, rng, shapes)
            args = [tvm.runtime.tensor(feeds[s.name], dev) for s in manifest.inputs]
            vm.set_input("main", *args)
            if cold is None:
                t3 = time.perf_counter_ns()
                vm.invoke_stateful("main")
                first_ns = time.perf_counter_ns() - t3
                cold = {
                    "connect_ms": connect_ns / 1e6,
                    "upload_ms": upload_ns / 1e6,
                    "load_ms": load_ns / 1e6,
                    "first_run_ms": first_ns / 1e6,
                    "total_ms": (upload_ns + load_ns + first_ns) / 1e6,
                    "batch": batch,
                }
            warm = []
            if policy.warmup:
                res = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=policy.warmup)("main")
                warm = [float(r) for r in res.results]
            estimate_ns = float(np.mean(warm)) * 1e9 if warm else 0.0
            if policy.runs is None and not warm:
                res = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=1)("main")
                estimate_ns = float(res.results[0]) * 1e9
            n = policy.run_count(estimate_ns)
            samples: list[float] = []
            chunk = max(1, n // 20)  # several remote calls so the progress bar moves
            while len(samples) < n:
                k = min(chunk, n - len(samples))
                res = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=k)("main")
                samples.extend(float(r) for r in res.results)
                if progress is not None:
                    progress(f"batch {batch}", len(samples), n)
        except Exception as exc:  # noqa: BLE001 -- report the batch as failed, keep the others
            batches_out.append(
                {"batch": batch, "status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            )
            continue
        ns = np.asarray(samples) * 1e9
        stats = LatencyStats.from_ns(ns)
        batches_out.append(
            {
                "batch": batch,
                "status": "ok",
                "runs": stats.n,
                "warmup": len(warm),
                "latency_ms": stats.to_dict(),
                "throughput_per_s": batch * 1e3 / stats.mean_ms if stats.mean_ms > 0 else None,
                "samples_ms": [round(v / 1e6, SAMPLE_DECIMALS) for v in ns.tolist()],
                "stages": _stage_summary({}, ns) or None,
            }
        )
    entry["cold_start"] = cold
    entry["batches"] = batches_out
    if not any(b["status"] == "ok" for b in batches_out):
        entry["status"] = "error"
        entry["error"] = "; ".join(f"batch {b['batch']}: {b['error']}" for b in batches_out)
    return entry


def rpc_report(
    package_dirs: list[str],
    address: str,
    *,
    policy: RunPolicy,
    options: dict[str, Any],
    batches: tuple[int, ...] = (1,),
    seed: int = 0,
    shapes: dict[str, tuple[int, ...]] | None = None,
    baseline: str | None = None,
    command: list[str] | None = None,
    progress: Callable[[str, str, int, int], None] | None = None,
    connect_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Benchmark TVM packages over RPC and return a full report (``remote`` is set)."""
    entries = []
    for pkg in package_dirs:
        name = Path(pkg).resolve().name
        cb = None if progress is None else (lambda label, d, n, name=name: progress(name, label, d, n))
        entries.append(
            bench_rpc_package(
                pkg,
                address,
                policy=policy,
                batches=batches,
                seed=seed,
                shapes=shapes,
                progress=cb,
                connect_timeout_s=connect_timeout_s,
            )
        )
    names = [e["name"] for e in entries]
    if baseline is not None and baseline not in names:
        raise ValueError(f"--baseline {baseline!r} is not a variant; variants: {names}")
    ok = [e["name"] for e in entries if e["status"] == "ok"]
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": "lanner bench",
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "options": options,
        "machine": machine_info(),
        "baseline": baseline or (ok[0] if ok else names[0] if names else None),
        "remote": {"rpc": address, "device": ",".join(sorted({str(e.get("target")) for e in entries}))},
        "variants": entries,
    }
    validate_report(report)
    return report
