"""``lanner models``: list the model registry and build its packages for this machine."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..names import AUTO, FACE_BACKENDS, FACE_PRECISIONS

    p = sub.add_parser("models", help="list shipped models; build their packages for this machine")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    ls = msub.add_parser("list", help="registry entries, checksums and cached packages (built, not built, corrupt)")
    ls.set_defaults(func=run_list)
    b = msub.add_parser("build", help="compile the face detectors' nets for this machine into the cache")
    b.add_argument("--backend", default=AUTO, choices=(AUTO, *FACE_BACKENDS))
    b.add_argument("--precision", default=AUTO, choices=(AUTO, *FACE_PRECISIONS))
    b.add_argument("--force", action="store_true", help="rebuild packages that exist (corrupt ones are always rebuilt)")
    b.add_argument(
        "--from-weights",
        action="store_true",
        help="first re-export the ONNX files from facenet-pytorch's .pt weights (needs torch and "
        "facenet-pytorch) and check they match the registry",
    )
    b.add_argument(
        "--select",
        action="store_true",
        help="measure each backend/precision on the demo photo and record the fastest as 'auto'",
    )
    b.set_defaults(func=run_build)


def run_list(args: argparse.Namespace) -> int:
    from .. import models

    print(f"cache: {models.cache_dir()}")
    backend, precision = models.resolve("auto", "auto")
    corrupt = False
    for spec in models.REGISTRY.values():
        status = models.package_status(spec.name, backend, precision)
        corrupt = corrupt or status.startswith("corrupt")
        print(
            f"{spec.name}: {spec.file} sha256={spec.sha256[:16]}... {status} ({backend}/{precision})\n"
            f"  source: {spec.source}"
        )
    from ..models.face_detectors import DEFAULT_FACE_DETECTOR, FACE_DETECTORS

    print("face detectors (FaceDetector(model=...), lanner detect --model):")
    for spec in FACE_DETECTORS.values():
        default = " [default]" if spec.name == DEFAULT_FACE_DETECTOR else ""
        print(f"  {spec.name}{default}: {' + '.join(spec.nets)} -- {spec.description}")
    if corrupt:
        print(f"repair corrupt packages with `{models.REPAIR_COMMAND}`")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from .. import models

    if args.from_weights:
        verify_export()
    if args.select:
        import cv2

        from ..face.selection import select_auto
        from .detect import demo_image_path

        choice = select_auto(cv2.imread(str(demo_image_path())))
        for config, result in choice["median_ms"].items():
            print(f"  {config}: {result if isinstance(result, str) else f'{result:.1f} ms'}")
        recorded = models.cache_dir() / models.SELECTION_FILE
        print(f"auto = {choice['backend']}/{choice['precision']} (recorded in {recorded})")
    from ..models.face_detectors import FACE_DETECTORS

    nets = dict.fromkeys(net for spec in FACE_DETECTORS.values() for net in spec.nets)  # every detector's, once
    for name in nets:
        status = models.package_status(name, args.backend, args.precision)
        if status.startswith("corrupt"):
            print(f"{name}: {status}; rebuilding")
        path = models.build_package(
            name, args.backend, args.precision, force=args.force or status.startswith("corrupt")
        )
        print(f"{name}: {path}")
    from ..models.face_embedders import FACE_EMBEDDERS  # face recognition (issue 14): fp32, as FaceRecognizer runs them

    for name in FACE_EMBEDDERS:
        print(f"{name}: {models.build_package(name, args.backend, 'fp32', force=args.force)}")
    return 0


def verify_export() -> None:
    """Re-export the MTCNN ONNX files from the .pt weights and compare with the shipped ones.

    Raises:
        ValueError: a re-exported file differs from the registry's checksum.
        ImportError: torch or facenet-pytorch is missing.
    """
    import tempfile
    from pathlib import Path

    from .. import models
    from ..compile.exporters.mtcnn import export_mtcnn_onnx
    from ..names import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        paths = export_mtcnn_onnx(Path(tmp))
        for net, path in paths.items():
            spec = models.get_spec(f"mtcnn-{net}")
            digest = sha256_file(path)
            if digest != spec.sha256:
                raise ValueError(
                    f"re-exported {net}.onnx has sha256 {digest}, the registry expects {spec.sha256} "
                    "(different torch version?)"
                )
            print(f"mtcnn-{net}: re-exported from weights, sha256 matches the registry")
