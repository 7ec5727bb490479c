"""Lanner's model registry: every shipped model with its checksum, and the compiled packages
built from it for this machine.

Shipped models are ONNX files inside the wheel (``lanner/models/<family>/*.onnx``), recorded
here with their sha256; they are never looked up by shape or guessed from a file name. At first
use (or with ``lanner models build``) each is compiled by ``lanner.compile`` for the host into a
user cache directory: ``$LANNER_CACHE`` when set, else ``$XDG_CACHE_HOME/lanner`` or
``~/.cache/lanner``.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..names import AUTO, FACE_BACKENDS, FACE_PRECISIONS, sha256_file

__all__ = [
    "ModelSpec",
    "REGISTRY",
    "MTCNN_NETS",
    "get_spec",
    "onnx_path",
    "cache_dir",
    "package_dir",
    "resolve",
    "selected_auto",
    "build_package",
    "open_net",
    "package_status",
    "REPAIR_COMMAND",
    "QDQ_FIDELITY",
]

_HERE = Path(__file__).resolve().parent

# What FaceDetector(backend=..., precision=...) accepts; int8 is refused with a reason.
BACKENDS: tuple[str, ...] = (AUTO, *FACE_BACKENDS)
PRECISIONS: tuple[str, ...] = (AUTO, *FACE_PRECISIONS, "int8")
# What "auto" resolves to until `lanner models build --select` has measured this machine
# (benchmarks/detection/README.md): OpenVINO FP32 was the fastest cascade at parity on x86;
# ONNX Runtime FP32 was 2-3x slower; OpenVINO FP16 is unsupported on CPUs without FP16 units;
# INT8 P-Net broke parity (IoU 0.83) for <15% gain and INT8 R-Net failed fidelity.
AUTO_BACKEND = "openvino"
AUTO_PRECISION = "fp32"
SELECTION_FILE = "mtcnn-auto.json"  # in cache_dir(): the measured choice for "auto"


@dataclass(frozen=True)
class ModelSpec:
    """One shipped model (frozen: safe to share between threads).

    Attributes:
        name: registry key, e.g. ``"mtcnn-pnet"``.
        file: ONNX path relative to the ``lanner.models`` package folder.
        sha256: checksum of that file; checked before every build.
        inputs: ``{input name: shape}``, strings for dynamic axes.
        outputs: output names, in order.
        source: where the weights come from.
        quantized: the file is an int8 QDQ graph: its package is checked against the
            reference with :data:`QDQ_FIDELITY` instead of lanner.compile's fp32 bar.
    """

    name: str
    file: str
    sha256: str
    inputs: dict
    outputs: tuple[str, ...]
    source: str
    quantized: bool = False


#: Fidelity bar of the package of an int8 QDQ file: OpenVINO runs it on its own int8 kernels and the
#: reference (ONNX Runtime) on its own, which requantize with other rounding; through 29 convolutions
#: (dlib-resnet-lowres) they agree to cosine ~0.9993 and 3% of the largest output on random inputs,
#: below the 0.9999 / 1% of two fp32 engines. The accuracy of each such file is its benchmark's.
QDQ_FIDELITY = {"min_cosine": 0.999, "max_rel_error": 0.05}


_FACENET = "facenet-pytorch 2.6.0 wheel, facenet_pytorch/data/{}.pt (MTCNN, Zhang et al. 2016)"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mtcnn-pnet",
            "mtcnn/pnet.onnx",
            "cbc2bc662ea6b2051cd172afb0738b1191c4234477cf1a3ce269b986190d25f3",
            {"image": (1, 3, "height", "width")},
            ("maps",),
            _FACENET.format("pnet"),
        ),
        ModelSpec(
            "mtcnn-rnet",
            "mtcnn/rnet.onnx",
            "f8baaf5e13a5436a4fed864d38d50203ff65206c8d21a8ae04a978fa1cb734ca",
            {"image": ("n", 3, 24, 24)},
            ("reg", "prob"),
            _FACENET.format("rnet"),
        ),
        ModelSpec(
            "mtcnn-onet",
            "mtcnn/onet.onnx",
            "2588a18a550ee1ecf2792a33715de694d573012c5d021b6b6ecb3b4a9db6cebe",
            {"image": ("n", 3, 48, 48)},
            ("reg", "landmarks", "prob"),
            _FACENET.format("onet"),
        ),
    )
}
MTCNN_NETS: tuple[str, ...] = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")

# -- Face recognition (issue 14): the teacher; the routing table is lanner.models.face_embedders --
REGISTRY["dlib-resnet"] = ModelSpec(
    "dlib-resnet",
    "dlib_resnet/dlib_resnet.onnx",
    "3fd7b556d85a9fcecdb95209223761a1a00ff336edf74869b234179014125fc8",
    {"image": ("n", 3, 150, 150)},
    ("descriptor",),
    "dlib_face_recognition_resnet_model_v1.dat (Davis King, public domain) from the face-recognition-models 0.3.0 "
    "sdist, converted by lanner.compile.exporters.dlib_resnet; card: dlib_resnet/README.md",
)

# -- Face recognition (issue 14): the bridge model, dlib's ResNet fine-tuned for small faces by
# `lanner distill face-bridge` (int8 QDQ ONNX); routed for faces up to its max_face_width
# (lanner.models.face_embedders) --
REGISTRY["dlib-resnet-lowres"] = ModelSpec(
    "dlib-resnet-lowres",
    "dlib_resnet_lowres/dlib_resnet_lowres.onnx",
    "5e858504bf4efd962f92b57f2afacb972ce0ef83edb367c5a0990714cba14c33",
    {"image": ("n", 3, 150, 150)},
    ("descriptor",),
    "dlib-resnet fine-tuned by lanner.distill.bridge on small faces of the celeba-faces training identities "
    "(CelebA, research use only) toward the teacher's own outputs on the clean faces; "
    "card: dlib_resnet_lowres/README.md",
    quantized=True,
)

# -- Face recognition (issue 14): the 16 px student, trained by `lanner distill face-embedding` (int8 QDQ ONNX).
# Not in the routing table (lanner.models.face_embedders) yet: it is far less accurate than the teacher on
# upsampled faces (rank-1 0.22 vs 0.69 at 16 px, face_student16/README.md).
REGISTRY["face-student16"] = ModelSpec(
    "face-student16",
    "face_student16/face_student16.onnx",
    "1dcd8ce19bba4e83681468d26fc9fcee860451a15ee45fa6b92fb5bc2f702292",
    {"image": ("n", 3, 16, 16)},
    ("embedding",),
    "distilled from dlib-resnet by lanner.distill on the celeba-faces training identities (research use only); "
    "card: face_student16/README.md",
    quantized=True,
)

# -- Face recognition (issue 14): the bridge model compressed into a 32 px student by `lanner distill
# face-compress` (int8 QDQ ONNX); routed by FaceRecognizer(embedders=face_embedders.FAST_EMBEDDERS).
REGISTRY["face-student32"] = ModelSpec(
    "face-student32",
    "face_student32/face_student32.onnx",
    "66e7b6d77a7cc385c7e2ddc7b85b6f8686367ccf9e33d53123236956888814a9",
    {"image": ("n", 3, 32, 32)},
    ("embedding",),
    "taught by dlib-resnet-lowres (the bridge model) on degraded views of the celeba-faces training identities "
    "and the facemask-voc train split's faces (research use only); card: face_student32/README.md",
    quantized=True,
)

# -- Face quality (issue 16): SDD-FIQA regressor; contract in lanner.models.face_quality --
REGISTRY["face-quality"] = ModelSpec(
    "face-quality",
    "face_quality/face_quality.onnx",
    "9e032e8a402c088140991fd6e6f4f61514dd1bf680558c0cdcbb148ddaf4ac39",
    {"image": ("n", 3, 32, 32), "face_width": ("n", 1)},
    ("quality",),
    "trained by `lanner distill face-quality` on SDD-FIQA pseudo-labels from dlib-resnet over celeba-faces training "
    "identities (CelebA, research use only); card: face_quality/README.md",
)

# -- Masked and tiny faces (issue 15): the student's R-Net and O-Net (teacher architecture, retrained);
# the detector table is lanner.models.face_detectors --
_MASKED = (
    "MTCNN {} fine-tuned for masked and tiny faces by lanner.distill.detection (facemask-voc train split, "
    "CC0; celeba-faces training identities with synthetic masks, research use); card: mtcnn_masked/README.md"
)
REGISTRY["mtcnn-masked-rnet"] = ModelSpec(
    "mtcnn-masked-rnet",
    "mtcnn_masked/rnet.onnx",
    "224afc16282bdf533dcef7d64eb02b58f98d68244acb7a8cecca2639b4d02076",
    {"image": ("n", 3, 24, 24)},
    ("reg", "prob"),
    _MASKED.format("R-Net"),
)
REGISTRY["mtcnn-masked-onet"] = ModelSpec(
    "mtcnn-masked-onet",
    "mtcnn_masked/onet.onnx",
    "95f347c3fc5e1d4ae5372b2d2bf3cf8c7ce0fe5ffa487def0bf6a52069dbdad6",
    {"image": ("n", 3, 48, 48)},
    ("reg", "landmarks", "prob"),
    _MASKED.format("O-Net"),
)


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry for ``name``.

    Raises:
        ValueError: unknown model name (the message lists the known ones).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(REGISTRY)}") from None


def onnx_path(name: str) -> Path:
    """Path of the shipped ONNX file of ``name``, after checking its sha256.

    Raises:
        ValueError: unknown model, or the file's checksum differs from the registry.
        FileNotFoundError: the file is missing from the installation.
    """
    spec = get_spec(name)
    path = _HERE / spec.file
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing from the Lanner installation")
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {spec.sha256}, got {actual}")
    return path


def cache_dir() -> Path:
    """The user cache directory for compiled packages ($LANNER_CACHE, else XDG cache/lanner)."""
    env = os.environ.get("LANNER_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lanner"


def resolve(backend: str, precision: str) -> tuple[str, str]:
    """Resolve ``"auto"`` backend/precision to concrete ones.

    Raises:
        ValueError: unknown backend or precision.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend should be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {PRECISIONS}, got {precision!r}")
    if backend == "auto" and precision == "auto":
        backend, precision = selected_auto()
    elif backend == "auto":
        backend = AUTO_BACKEND
    elif precision == "auto":
        precision = AUTO_PRECISION
    if precision == "int8":
        raise ValueError(
            "precision 'int8' is not offered for the MTCNN nets (INT8 P-Net broke parity with "
            "facenet-pytorch, INT8 R-Net failed fidelity; see benchmarks/detection/README.md); "
            "use 'fp32', 'fp16' or 'bf16'"
        )
    return backend, precision


def selected_auto() -> tuple[str, str]:
    """The (backend, precision) that ``"auto"`` means here: the fastest configuration measured by
    ``lanner models build --select`` (recorded in the cache), else the registry default."""
    path = cache_dir() / SELECTION_FILE
    try:
        choice = json.loads(path.read_text())
        backend, precision = choice["backend"], choice["precision"]
    except (OSError, ValueError, KeyError, TypeError):
        return AUTO_BACKEND, AUTO_PRECISION
    if backend not in FACE_BACKENDS or precision not in FACE_PRECISIONS:
        return AUTO_BACKEND, AUTO_PRECISION
    return backend, precision


def package_dir(name: str, backend: str, precision: str) -> Path:
    """Cache folder of the package of ``name`` compiled for this host with backend/precision
    (keyed by the ONNX checksum, so a new model never reuses an old package)."""
    backend, precision = resolve(backend, precision)
    spec = get_spec(name)
    return cache_dir() / "packages" / f"{name}-{spec.sha256[:12]}" / f"{platform.machine()}-{backend}-{precision}"


from ._runtime import REPAIR_COMMAND, build_package, open_net, package_status  # noqa: E402  (needs the names above)
