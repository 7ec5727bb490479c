"""The face-recognition routing table: which registry model embeds a face of which size.

Every entry is a registry model (``lanner.models.REGISTRY``, checksummed ONNX) that maps an
aligned ``chip_size`` chip (:func:`lanner.face.align.align_faces`, RGB, float32 in [0, 1],
``(N, 3, S, S)``) into issue 14's one embedding space, ``e = normalize(d - mu)`` with ``d`` the
descriptor of dlib's ResNet (the teacher) and ``mu`` its mean over clean training faces:

* the teacher outputs ``d`` itself (``centre_file`` names the JSON holding ``mu``);
* a student outputs a vector whose direction approximates ``e`` (no centre);
* the bridge model (``dlib-resnet-lowres``, the teacher fine-tuned for small faces) outputs a descriptor in
  the teacher's own space, centred by the teacher's ``mu``.

:class:`lanner.FaceRecognizer` sends each face to the entry with the smallest
``max_face_width`` that is at least the face's width (MTCNN box width, px), so students serve
small faces and the teacher (``max_face_width = inf``) everything larger. A student ships by
adding its registry model and one entry here; nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FaceEmbedderSpec",
    "FACE_EMBEDDERS",
    "TEACHER",
    "BRIDGE",
    "STUDENT",
    "DEFAULT_EMBEDDERS",
    "FAST_EMBEDDERS",
    "EMBEDDING_DIM",
    "routing_table",
    "read_space",
]

_HERE = Path(__file__).resolve().parent
EMBEDDING_DIM = 128  # the shared space's dimension (dlib's descriptor)


@dataclass(frozen=True)
class FaceEmbedderSpec:
    """One face embedder.

    Attributes:
        model: registry name of its ONNX (``lanner.models.get_spec(model)``).
        chip_size: side of the aligned chip it reads, px.
        output: name of its output tensor ((N, 128) float32).
        max_face_width: faces up to this wide (px, MTCNN box width) may be routed here.
        space_file: JSON beside the weights (relative to the ``lanner.models`` folder) with the
            identification ``threshold`` at FAR 1e-3 (and, for the teacher, ``mu``).
        space_sha256: checksum of that JSON.
        centred: True when the output is the raw teacher descriptor ``d`` (``mu`` is subtracted).
    """

    model: str
    chip_size: int
    output: str
    max_face_width: float
    space_file: str
    space_sha256: str
    centred: bool


TEACHER = "dlib-resnet"
BRIDGE = "dlib-resnet-lowres"  # the teacher adapted to small faces (lanner.distill.bridge)
STUDENT = "face-student32"  # the bridge compressed into a 32 px student (lanner.distill.compress)

FACE_EMBEDDERS: dict[str, FaceEmbedderSpec] = {
    spec.model: spec
    for spec in (
        FaceEmbedderSpec(
            TEACHER,
            150,
            "descriptor",
            math.inf,
            "dlib_resnet/dlib_resnet.json",
            "3a362266428ec480f14e66ac1993b7d9823f17effa1a871aaa32b60876f550aa",
            True,
        ),
        # dlib's ResNet fine-tuned for small upsampled faces (lanner.distill.bridge): the teacher's raw
        # descriptor space, so centred with the teacher's mu (copied into its JSON); routed up to the largest
        # width at which it beat the teacher on the validation identities (its JSON's "routing").
        FaceEmbedderSpec(
            BRIDGE,
            150,
            "descriptor",
            20.0,
            "dlib_resnet_lowres/dlib_resnet_lowres.json",
            "bd3c8f525192c7f8cc892b8a742dbc0085daa10073d9b53c1cc203dd3eb7bf43",
            True,
        ),
        # The bridge model's small-face embeddings in a 32 px student (consistent teaching on the same degraded
        # views): the same faces as the bridge, ~100x cheaper, less accurate; not in the default routes.
        FaceEmbedderSpec(
            STUDENT,
            32,
            "embedding",
            20.0,
            "face_student32/face_student32.json",
            "1f1caf24f761499ce4637bc3f2778e7ed3284321f0ca4979e35d63ecb766583d",
            False,
        ),
    )
}

# The routes lanner.FaceRecognizer takes: by default the most accurate model for each face size; FAST_EMBEDDERS
# trades accuracy on faces <= 20 px for speed (benchmarks/recognition has both sides of the trade).
DEFAULT_EMBEDDERS: tuple[str, ...] = (BRIDGE, TEACHER)
FAST_EMBEDDERS: tuple[str, ...] = (STUDENT, TEACHER)


def routing_table(embedders: tuple[str, ...] | None = None) -> list[FaceEmbedderSpec]:
    """The embedders ``lanner.FaceRecognizer`` routes between, by increasing ``max_face_width`` (the teacher,
    unbounded, last).

    Args:
        embedders: registry names (default: :data:`DEFAULT_EMBEDDERS`).

    Raises:
        ValueError: an unknown name, none, or two embedders for the same face widths.
    """
    names = DEFAULT_EMBEDDERS if embedders is None else tuple(embedders)
    unknown = [n for n in names if n not in FACE_EMBEDDERS]
    if unknown or not names:
        raise ValueError(f"embedders should be names from {sorted(FACE_EMBEDDERS)}, got {names}")
    routes = sorted((FACE_EMBEDDERS[n] for n in names), key=lambda spec: spec.max_face_width)
    limits = [spec.max_face_width for spec in routes]
    if len(set(limits)) != len(limits):
        raise ValueError(
            f"embedders {names} should serve different face widths, got max_face_width {limits}: "
            "a face would have two models (take one of them)"
        )
    return routes


def read_space(spec: FaceEmbedderSpec) -> dict:
    """The embedder's JSON (``threshold``, ``far``, and ``mu`` as a (128,) float32 array when centred).

    Raises:
        FileNotFoundError: the file is missing from the installation.
        ValueError: checksum mismatch or a malformed file.
    """
    path = _HERE / spec.space_file
    if not path.is_file():
        raise FileNotFoundError(f"embedding-space file {path} is missing from the Lanner installation")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.space_sha256:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {spec.space_sha256}, got {actual}")
    space = json.loads(data)
    threshold = space.get("threshold")
    if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"{path}: threshold should be a cosine similarity in [-1, 1], got {threshold!r}")
    if spec.centred:
        mu = np.asarray(space.get("mu"), np.float32)
        if mu.shape != (EMBEDDING_DIM,) or not np.isfinite(mu).all():
            raise ValueError(f"{path}: mu should be {EMBEDDING_DIM} finite numbers, got shape {mu.shape}")
        space["mu"] = mu
    return space
