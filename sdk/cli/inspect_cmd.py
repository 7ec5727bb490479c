"""``lanner inspect``: show a package's manifest and verify its checksums.

(The module is not called ``inspect`` so that it cannot shadow the standard library module.)
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show a package's manifest and verify its files")
    p.add_argument("package", metavar="PACKAGE_DIR")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=run)


def _shape(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _integrity(manifest, package: str) -> tuple[str, bool]:
    """The integrity line and whether it passed: every listed file present with its sha256 (never
    read through a symlink, see ``Manifest.verify``) and no file the manifest does not list."""
    from ..manifest import PackageError

    try:
        manifest.verify(package)
    except PackageError as exc:
        return f"FAILED: {exc}", False
    unlisted = manifest.unlisted_files(package)
    if unlisted:
        return f"FAILED: files in the package but not in the manifest: {unlisted}", False
    return f"ok ({len(manifest.files)} files, sha256)", True


def _target_line(manifest) -> tuple[str, bool]:
    """The target line and whether the target is known (a package for another machine is fine to inspect)."""
    from ..targets import TARGETS

    target = TARGETS.get(manifest.target)
    if target is None:
        return f"{manifest.target} (UNKNOWN target; this lanner knows {sorted(TARGETS)})", False
    ok, reason = target.runnable_here()
    where = "runs on this machine" if ok else f"does NOT run on this machine: {reason}"
    return f"{manifest.target} ({target.description}); {where}", True


def run(args: argparse.Namespace) -> int:
    from ..manifest import Manifest

    manifest = Manifest.read(args.package)
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2))
        return 0
    integrity, intact = _integrity(manifest, args.package)
    target_line, known = _target_line(manifest)
    status = 0 if intact and known else 1
    m = manifest
    print(f"package   {args.package}")
    print(f"model     {m.name}" + (f" (task: {m.task})" if m.task else ""))
    print(f"target    {target_line}")
    print(f"backend   {m.backend} / {m.precision}   options {dict(m.backend_options)}")
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for s in specs:
            print(f"{kind:<9} {s.name}: {_shape(s.shape)} {s.dtype}")
    if m.preprocessing:
        print(f"preproc   {json.dumps(dict(m.preprocessing))}")
    print(f"toolchain {', '.join(f'{k} {v}' for k, v in m.toolchain.items())}")
    if m.fidelity:
        worst = min(o["cosine_min"] for o in m.fidelity["outputs"].values())
        top1 = m.fidelity.get("top1_agreement")
        print(
            f"fidelity  {'passed' if m.fidelity.get('passed') else 'FAILED'}: min cosine {worst:.6f}"
            + (f", top-1 agreement {top1:.3f}" if top1 is not None else "")
            + f" on {m.fidelity['samples']} samples"
        )
    else:
        print("fidelity  not measured (target cannot run on the build host)")
    if m.latency_ms:
        print(f"latency   {m.latency_ms['median']:.3f} ms median at batch 1 ({m.latency_ms['runs']} runs)")
    candidates = m.selection.get("candidates", [])
    if len(candidates) > 1:
        print(f"selection {m.selection.get('reason')}")
        for c in candidates:
            lat = c.get("latency_ms")
            print(
                f"  {c['backend']:<12}{c['precision']:<6}{c['status']:<16}"
                + (f"{lat['median']:.3f} ms" if lat else c.get("reason", "")[:90])
            )
    print(f"integrity {integrity}")
    return status
