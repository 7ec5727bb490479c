"""The names Lanner's modules share, defined once: backends, precisions, the manifest's file
name, and the two small helpers every package reader and report needs (a file's sha256, the
installed versions of packages).

Validators, CLI choices and reports import these; the deployment targets are the keys of
:data:`lanner.targets.TARGETS`. Nothing here imports a toolchain.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
from collections.abc import Iterable

__all__ = [
    "AUTO",
    "BACKENDS",
    "PRECISIONS",
    "FACE_BACKENDS",
    "FACE_PRECISIONS",
    "MANIFEST_FILENAME",
    "DISTRIBUTIONS",
    "sha256_file",
    "package_versions",
]

#: The choice that lets Lanner decide by measurement (``--backend auto``, ``--precision auto``).
AUTO = "auto"
#: Every backend a package can be built for, in no particular order (a target's own
#: ``backends`` give its ``auto`` preference order).
BACKENDS: tuple[str, ...] = ("openvino", "onnxruntime", "tvm")
#: Every precision a package can be built at.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
#: What the face detector's nets are offered with (CPU backends; int8 broke MTCNN's parity).
FACE_BACKENDS: tuple[str, ...] = ("openvino", "onnxruntime")
FACE_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: The manifest of a package, at the package folder's top.
MANIFEST_FILENAME = "manifest.json"
#: The distributions whose versions ``lanner info`` shows and every benchmark report records.
DISTRIBUTIONS: tuple[str, ...] = (
    "lanner",
    "numpy",
    "onnxruntime",
    "openvino",
    "apache-tvm",
    "nncf",
    "onnx",
    "torch",
    "opencv-contrib-python-headless",
)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks.

    Args:
        path: the file.

    Returns:
        64 lowercase hex digits.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution, read from its metadata (nothing is imported).

    Args:
        names: distribution names, e.g. ``("numpy", "openvino")``.

    Returns:
        ``{name: version}``, ``None`` for a distribution that is not installed.
    """
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out
