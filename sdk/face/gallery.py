"""``lanner.FaceGallery``: named face embeddings, identification, and a safe file format."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from .._paths import existing_file

__all__ = ["FaceGallery", "UNKNOWN"]

UNKNOWN = "unknown"  # the name identify() gives a face that matches no one above the threshold
FORMAT = "lanner-face-gallery"
FORMAT_VERSION = 1
_ARRAYS = {"embeddings", "labels", "header"}
_NORM_TOLERANCE = 1e-3  # stored embeddings are unit-norm within this


def _default_threshold() -> float:
    from ..models import face_embedders

    return float(face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])["threshold"])


class FaceGallery:
    """Known people as unit embeddings, one or more per name; identifies faces by cosine similarity.

    A probe is given the name whose closest embedding is most similar to it, or ``"unknown"``
    when that similarity is below ``threshold``. The default threshold is the teacher's,
    calibrated for a false-accept rate of 1e-3 between different people of the training
    identities (stored with the model, ``lanner/models/dlib_resnet/dlib_resnet.json``).

    Files are one ``.npz`` (NumPy, read with ``allow_pickle=False``: never pickle) holding the
    embeddings, their name indices and a JSON header; :meth:`save` writes a temporary file and
    renames it over the target, so a crash never leaves a half-written gallery.

    Thread-safe: a lock guards the contents; :meth:`add`, :meth:`identify` and :meth:`save` may
    be called from several threads.

    Args:
        threshold: cosine similarity below which a face is ``"unknown"``, in [-1, 1]
            (default: the teacher's FAR-1e-3 threshold).
        dim: embedding dimension (128: the space of :class:`lanner.FaceRecognizer`).

    Raises:
        TypeError: threshold or dim of the wrong type.
        ValueError: threshold outside [-1, 1] or dim < 1.
    """

    def __init__(self, *, threshold: float | None = None, dim: int = 128) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim should be an int, got {type(dim).__name__}")
        if dim < 1:
            raise ValueError(f"dim should be >= 1, got {dim}")
        self.dim = int(dim)
        self.threshold = check_threshold(_default_threshold() if threshold is None else threshold)
        self._names: list[str] = []
        self._embeddings = np.zeros((0, self.dim), np.float32)
        self._labels = np.zeros(0, np.int32)
        self._lock = threading.Lock()

    # -- contents ------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The enrolled names, in enrolment order."""
        return tuple(self._names)

    def __len__(self) -> int:
        """Number of stored embeddings (all names)."""
        return int(self._labels.shape[0])

    def add(self, name: str, embeddings: np.ndarray) -> None:
        """Enrol one or more embeddings of one person.

        Args:
            name: the person's name (a non-empty string other than ``"unknown"``).
            embeddings: (dim,) or (N, dim) float; normalised to unit length on the way in.

        Raises:
            TypeError: name not a string, embeddings not a float array.
            ValueError: empty or reserved name, wrong dimension, NaN/inf or zero vectors.
        """
        if not isinstance(name, str):
            raise TypeError(f"name should be a str, got {type(name).__name__}")
        if not name.strip() or name == UNKNOWN:
            raise ValueError(f"name should be a non-empty string other than {UNKNOWN!r}, got {name!r}")
        vectors = self._check_embeddings(embeddings)
        if len(vectors) == 0:
            raise ValueError("embeddings should hold at least one vector, got 0")
        with self._lock:
            if name not in self._names:
                self._names.append(name)
            label = self._names.index(name)
            self._embeddings = np.concatenate([self._embeddings, vectors])
            self._labels = np.concatenate([self._labels, np.full(len(vectors), label, np.int32)])

    def identify(self, embeddings: np.ndarray, *, thresholds: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """Name each probe embedding.

        Args:
            embeddings: (dim,) or (N, dim) float probes (normalised here).
            thresholds: optional (N,) per-probe thresholds in [-1, 1] instead of the gallery's one:
                each face's own, from the model that embedded it
                (:meth:`lanner.FaceRecognizer.thresholds`, which takes this gallery's threshold as its base).

        Returns:
            ``(names, scores)``: N names (``"unknown"`` below the threshold) and (N,) float32
            cosine similarities to the best-matching person's closest embedding.

        Raises:
            TypeError: embeddings or thresholds not a float array.
            ValueError: the gallery is empty, wrong dimension, NaN/inf or zero vectors, or thresholds
                of the wrong shape or outside [-1, 1].
        """
        probes = self._check_embeddings(embeddings)
        if thresholds is None:
            limits = np.full(len(probes), self.threshold)
        else:
            limits = _check_thresholds(thresholds, len(probes))
        with self._lock:
            if len(self._labels) == 0:
                raise ValueError("the gallery is empty: add() people before identify()")
            scores = probes @ self._embeddings.T  # (N, M) cosine similarities
            per_name = np.full((len(probes), len(self._names)), -np.inf, np.float32)
            for label in range(len(self._names)):
                per_name[:, label] = scores[:, self._labels == label].max(axis=1)
            best = per_name.argmax(axis=1)
            best_scores = per_name[np.arange(len(probes)), best].astype(np.float32)
            names = [self._names[i] if s >= t else UNKNOWN for i, s, t in zip(best, best_scores, limits)]
        return names, best_scores

    def _check_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        if not isinstance(embeddings, np.ndarray):
            raise TypeError(f"embeddings should be a numpy array, got {type(embeddings).__name__}")
        if embeddings.dtype.kind != "f":
            raise TypeError(f"embeddings should be a float array, got dtype {embeddings.dtype}")
        vectors = embeddings[None] if embeddings.ndim == 1 else embeddings
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(
                f"embeddings should have shape ({self.dim},) or (N, {self.dim}) (this gallery's "
                f"dimension), got {embeddings.shape}: embeddings of another model?"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings should be finite, got NaN or inf")
        # in float64 and scaled by each row's largest value first: a float32 norm of 1e20s overflowed to inf
        # (stored as a zero vector), of 1e-30s underflowed to 0 (refused as "a zero vector")
        vectors = vectors.astype(np.float64)
        largest = np.abs(vectors).max(axis=1, keepdims=True)
        if (largest == 0).any():
            raise ValueError("embeddings should be non-zero vectors, got a zero vector")
        vectors /= largest
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the gallery to ``path`` (a ``.npz``), atomically: a temporary file in the same
        folder, renamed over ``path`` once complete.

        Args:
            path: destination file; its folder must exist.

        Returns:
            ``path`` as a Path.

        Raises:
            ValueError: the gallery is empty, or ``path`` exists and is not a regular file (a folder, a device:
                the rename would replace it).
            FileNotFoundError: the destination folder does not exist.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save the gallery: folder {path.parent} does not exist")
        if path.exists() and not path.is_file():
            raise ValueError(f"cannot save the gallery to {path}: it exists and is not a regular file")
        with self._lock:
            if len(self._labels) == 0:
                raise ValueError("the gallery is empty: add() people before save()")
            header = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "dim": self.dim,
                "threshold": self.threshold,
                "names": list(self._names),
            }
            buffer = io.BytesIO()
            np.savez(buffer, embeddings=self._embeddings, labels=self._labels, header=np.array(json.dumps(header)))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaceGallery:
        """Read a gallery written by :meth:`save`, checking everything in it.

        Args:
            path: the ``.npz`` file.

        Returns:
            The gallery (its threshold is the saved one).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a Lanner gallery (corrupt, foreign or from another version), an
                empty gallery, or inconsistent contents (dimension, names, labels, norms).
        """
        path = existing_file(path, "gallery file")
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError(f"{path} is not a Lanner face gallery (not a readable .npz: no zip header)")
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
                keys = set(archive.files)
                if keys != _ARRAYS:
                    raise ValueError(
                        f"{path} is not a Lanner face gallery: expected arrays {sorted(_ARRAYS)}, got {sorted(keys)}"
                    )
                embeddings, labels, header_text = archive["embeddings"], archive["labels"], archive["header"]
        except (OSError, zipfile.BadZipFile, EOFError, MemoryError) as exc:  # MemoryError: a header claiming TiB
            raise ValueError(f"{path} is not a Lanner face gallery (not a readable .npz: {exc!r})") from None
        except ValueError as exc:
            if "not a Lanner face gallery" in str(exc):
                raise
            raise ValueError(f"{path} is not a Lanner face gallery ({exc})") from None
        if not all(isinstance(a, np.ndarray) for a in (embeddings, labels, header_text)):
            # numpy hands back the raw bytes of a zip member that is not a .npy file
            raise ValueError(f"{path} is not a Lanner face gallery: its members should be .npy arrays")
        if header_text.ndim != 0 or header_text.dtype.kind != "U":
            raise ValueError(f"{path}: the header should be a JSON string, got {header_text.dtype} {header_text.shape}")
        try:
            header = json.loads(str(header_text))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{path}: the header is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a Lanner face gallery: header format should be {FORMAT!r}, "
                f"got {header.get('format') if isinstance(header, dict) else header!r}"
            )
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: gallery format version should be {FORMAT_VERSION}, got {header.get('version')!r}"
            )
        dim, names = header.get("dim"), header.get("names")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{path}: dim should be a positive int, got {dim!r}")
        if (
            not isinstance(names, list)
            or not all(isinstance(n, str) and n.strip() and n != UNKNOWN for n in names)
            or len(set(names)) != len(names)
        ):
            raise ValueError(f"{path}: names should be a list of distinct non-empty strings, got {names!r}")
        if not names or embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"{path}: the gallery is empty (expected at least one person and one embedding)")
        if embeddings.dtype != np.float32 or embeddings.shape[1] != dim:
            raise ValueError(
                f"{path}: embeddings should be float32 (N, {dim}), got {embeddings.dtype} {embeddings.shape}"
            )
        if labels.dtype != np.int32 or labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"{path}: labels should be int32 ({embeddings.shape[0]},), got {labels.dtype} {labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= len(names) or len(np.unique(labels)) != len(names):
            raise ValueError(f"{path}: labels should index the {len(names)} names, each at least once")
        if not np.isfinite(embeddings).all() or np.abs(np.linalg.norm(embeddings, axis=1) - 1).max() > _NORM_TOLERANCE:
            raise ValueError(f"{path}: embeddings should be finite and unit-norm")
        try:
            threshold = check_threshold(header.get("threshold"))
        except (TypeError, ValueError) as exc:  # a foreign or corrupt file, whatever the type
            raise ValueError(f"{path}: {exc}") from None
        gallery = cls(threshold=threshold, dim=dim)
        gallery._names = list(names)
        gallery._embeddings = np.ascontiguousarray(embeddings)
        gallery._labels = np.ascontiguousarray(labels)
        return gallery

    def __repr__(self) -> str:
        return (
            f"FaceGallery({len(self._names)} names, {len(self)} embeddings, dim={self.dim}, "
            f"threshold={self.threshold:.4f})"
        )


def check_threshold(threshold, name: str = "threshold") -> float:
    """A cosine-similarity threshold as a float.

    Raises:
        TypeError: not a number (bool included).
        ValueError: outside [-1, 1] (NaN included; compared before any float conversion, which a 400-digit int
            overflows).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} should be a number, got {type(threshold).__name__}")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"{name} should be a cosine similarity in [-1, 1], got {threshold}")
    return float(threshold)


def _check_thresholds(thresholds, count: int) -> np.ndarray:
    if not isinstance(thresholds, np.ndarray) or thresholds.dtype.kind != "f":
        got = getattr(thresholds, "dtype", type(thresholds).__name__)
        raise TypeError(f"thresholds should be a float numpy array, got {got}")
    if thresholds.shape != (count,):
        raise ValueError(f"thresholds should have shape ({count},) (one per probe), got {thresholds.shape}")
    if not np.isfinite(thresholds).all() or np.abs(thresholds).max(initial=0.0) > 1.0:
        raise ValueError("thresholds should be cosine similarities in [-1, 1], got values outside or NaN")
    return thresholds.astype(np.float64)
