"""lanner.FaceGallery: enrol, identify with an 'unknown' threshold, save atomically, load strictly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lanner import FaceGallery
from lanner.models import face_embedders


def unit(rng: np.random.Generator, n: int, dim: int = 128) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def people():
    rng = np.random.default_rng(14)
    centres = unit(rng, 3)
    return {name: centres[i] for i, name in enumerate(("alice", "bob", "carol"))}, rng


def near(v: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    w = v + noise * rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(v.size)
    return w / np.linalg.norm(w)


def test_default_threshold_is_the_teachers():
    space = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])
    assert FaceGallery().threshold == pytest.approx(space["threshold"])


def test_identify_names_and_unknown(people):
    centres, rng = people
    gallery = FaceGallery(threshold=0.6)
    for name, v in centres.items():
        gallery.add(name, np.stack([near(v, rng, 0.3), near(v, rng, 0.3)]))
    gallery.add("alice", near(centres["alice"], rng, 0.3) * 7)  # one more, any length: normalised
    assert gallery.names == ("alice", "bob", "carol") and len(gallery) == 7
    probes = np.stack([near(centres["bob"], rng, 0.3), near(centres["alice"], rng, 0.3), unit(rng, 1)[0]])
    names, scores = gallery.identify(probes)
    assert names == ["bob", "alice", "unknown"]
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert scores[0] > 0.9 and scores[2] < 0.6
    one_name, one_score = gallery.identify(probes[0])  # a single (dim,) vector
    assert one_name == ["bob"] and one_score.shape == (1,)


def test_identify_with_per_probe_thresholds(people):
    centres, rng = people
    gallery = FaceGallery(threshold=0.6)
    for name, v in centres.items():
        gallery.add(name, v)
    probes = np.stack([near(centres["bob"], rng, 0.9), near(centres["bob"], rng, 0.9)])
    _, scores = gallery.identify(probes)
    between = scores - 0.01  # each probe's own threshold just under its score, then just over
    names, same = gallery.identify(probes, thresholds=between.astype(np.float64))
    assert names == ["bob", "bob"] and np.array_equal(same, scores)
    names, _ = gallery.identify(probes, thresholds=np.array([scores[0] - 0.01, scores[1] + 0.01]))
    assert names == ["bob", "unknown"]


@pytest.mark.parametrize(
    "thresholds, error, match",
    [
        (np.array([0.5]), ValueError, r"shape \(2,\) \(one per probe\), got \(1,\)"),
        (np.array([0.5, 1.5]), ValueError, r"in \[-1, 1\]"),
        (np.array([0.5, np.nan]), ValueError, r"in \[-1, 1\]"),
        (np.array([1, 0]), TypeError, "float numpy array, got int64"),
        (0.5, TypeError, "float numpy array, got float"),
    ],
)
def test_identify_rejects_bad_thresholds(people, thresholds, error, match):
    centres, _ = people
    gallery = FaceGallery()
    gallery.add("alice", centres["alice"])
    with pytest.raises(error, match=match):
        gallery.identify(np.stack([centres["alice"], centres["bob"]]), thresholds=thresholds)


def test_save_load_round_trip(tmp_path, people):
    centres, rng = people
    gallery = FaceGallery(threshold=0.55)
    for name, v in centres.items():
        gallery.add(name, v)
    path = gallery.save(tmp_path / "people.npz")
    loaded = FaceGallery.load(path)
    assert loaded.names == gallery.names and loaded.threshold == 0.55 and loaded.dim == 128
    probe = near(centres["carol"], rng, 0.2)
    assert loaded.identify(probe)[0] == gallery.identify(probe)[0] == ["carol"]
    np.testing.assert_array_equal(loaded.identify(probe)[1], gallery.identify(probe)[1])
    with np.load(path, allow_pickle=False) as archive:  # plain arrays + a JSON header, no pickle
        assert set(archive.files) == {"embeddings", "labels", "header"}
        assert json.loads(str(archive["header"]))["names"] == ["alice", "bob", "carol"]


def test_save_is_atomic(tmp_path, people, monkeypatch):
    centres, _ = people
    gallery = FaceGallery()
    gallery.add("alice", centres["alice"])
    path = gallery.save(tmp_path / "g.npz")
    before = path.read_bytes()
    gallery.add("bob", centres["bob"])

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        gallery.save(path)
    assert path.read_bytes() == before  # the old gallery is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]  # no temporary file left


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda g: g.add("x", np.ones(512, np.float32)), ValueError, r"shape \(128,\) or \(N, 128\).*got \(512,\)"),
        (lambda g: g.add("x", np.ones((2, 64), np.float32)), ValueError, "another model"),
        (lambda g: g.add("x", np.full(128, np.nan, np.float32)), ValueError, "finite"),
        (lambda g: g.add("x", np.zeros(128, np.float32)), ValueError, "non-zero"),
        (lambda g: g.add("x", np.ones(128, np.int64)), TypeError, "float array, got dtype int64"),
        (lambda g: g.add("x", [0.1] * 128), TypeError, "numpy array, got list"),
        (lambda g: g.add("unknown", np.ones(128, np.float32)), ValueError, "other than 'unknown'"),
        (lambda g: g.add("  ", np.ones(128, np.float32)), ValueError, "non-empty"),
        (lambda g: g.add(7, np.ones(128, np.float32)), TypeError, "name should be a str, got int"),
        (lambda g: g.add("x", np.ones((0, 128), np.float32)), ValueError, "at least one vector"),
        (lambda g: g.identify(np.ones(128, np.float32)), ValueError, "the gallery is empty"),
        (lambda g: g.save(Path("/nonexistent-folder-lanner/g.npz")), FileNotFoundError, "does not exist"),
    ],
)
def test_bad_use_raises(call, error, match):
    with pytest.raises(error, match=match):
        call(FaceGallery())


@pytest.mark.parametrize("scale", [1e20, 1e-30, 3e38])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_and_tiny_embeddings_are_normalised_not_lost(tmp_path, people, scale, dtype):
    """A float32 norm of 1e20s overflowed to inf and the vector was stored as zeros (a gallery that saved but
    would not load); 1e-30s underflowed and were refused as "a zero vector"."""
    centres, _ = people
    gallery = FaceGallery()
    for name, centre in centres.items():
        gallery.add(name, (centre.astype(np.float64) * scale).astype(dtype))
    loaded = FaceGallery.load(gallery.save(tmp_path / "g.npz"))
    names, scores = loaded.identify((centres["bob"].astype(np.float64) * scale).astype(dtype))
    assert names == ["bob"] and scores[0] == pytest.approx(1.0, abs=1e-6)


def test_save_refuses_to_replace_what_is_not_a_file(tmp_path, people):
    """The rename over the destination replaced a folder's name or a device (as root, /dev/null)."""
    centres, _ = people
    gallery = FaceGallery()
    gallery.add("alice", centres["alice"])
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(ValueError, match="adir.npz: it exists and is not a regular file"):
        gallery.save(tmp_path / "adir.npz")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="pipe.npz: it exists and is not a regular file"):
        gallery.save(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.npz", "pipe.npz"]  # no temporary file left


def test_save_empty_and_bad_threshold(tmp_path):
    with pytest.raises(ValueError, match="the gallery is empty"):
        FaceGallery().save(tmp_path / "g.npz")
    with pytest.raises(ValueError, match=r"\[-1, 1\], got 1.5"):
        FaceGallery(threshold=1.5)
    with pytest.raises(ValueError, match=r"\[-1, 1\], got 1000"):  # float() of it was an OverflowError
        FaceGallery(threshold=10**400)
    with pytest.raises(TypeError, match="threshold should be a number"):
        FaceGallery(threshold="0.5")


def _write_npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _header(**overrides) -> np.ndarray:
    header = {"format": "lanner-face-gallery", "version": 1, "dim": 4, "threshold": 0.5, "names": ["a", "b"]}
    header.update(overrides)
    return np.array(json.dumps(header))


GOOD = {"embeddings": np.eye(4, dtype=np.float32)[:3], "labels": np.array([0, 1, 1], np.int32)}


@pytest.mark.parametrize(
    "contents, match",
    [
        (b"not a zip at all", "not a readable .npz"),
        (b"PK\x03\x04 truncated zip", "not a Lanner face gallery"),
        ({"weights": np.zeros(3)}, r"expected arrays \['embeddings', 'header', 'labels'\]"),
        ({**GOOD, "header": np.array([{"a": 1}], dtype=object)}, "not a Lanner face gallery"),  # pickled: refused
        ({**GOOD, "header": np.array("{not json")}, "not valid JSON"),
        ({**GOOD, "header": np.array("[" * 100000 + "]" * 100000)}, "not valid JSON"),  # was a RecursionError
        ({**GOOD, "header": _header(threshold=10**400)}, "threshold should be a cosine similarity"),  # OverflowError
        ({**GOOD, "header": np.array(json.dumps({"format": "lanner-face-gallery"})[:-1] + ', "x": 1e999}')}, "version"),
        ({**GOOD, "header": _header(format="something-else")}, "header format should be 'lanner-face-gallery'"),
        ({**GOOD, "header": _header(version=9)}, "version should be 1, got 9"),
        ({**GOOD, "header": _header(dim=128)}, r"embeddings should be float32 \(N, 128\), got float32 \(3, 4\)"),
        ({**GOOD, "header": _header(names=["a", "a"])}, "distinct"),
        ({**GOOD, "header": _header(names=["a", "unknown"])}, "distinct non-empty strings"),
        ({**GOOD, "header": _header(threshold=3)}, r"threshold should be a cosine similarity in \[-1, 1\], got 3"),
        ({**GOOD, "header": _header(threshold="high")}, "threshold should be"),
        ({**GOOD, "header": _header(names=[])}, "the gallery is empty"),
        (
            {"embeddings": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int32), "header": _header()},
            "the gallery is empty",
        ),
        ({**GOOD, "labels": np.array([0, 1, 2], np.int32), "header": _header()}, "labels should index the 2 names"),
        ({**GOOD, "labels": np.array([0, 1], np.int32), "header": _header()}, r"labels should be int32 \(3,\)"),
        ({**GOOD, "embeddings": GOOD["embeddings"] * 2, "header": _header()}, "unit-norm"),
        ({**GOOD, "embeddings": GOOD["embeddings"].astype(np.float64), "header": _header()}, "float32"),
    ],
)
def test_load_rejects_corrupt_and_foreign_files(tmp_path, contents, match):
    path = tmp_path / "g.npz"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        _write_npz(path, **contents)
    with pytest.raises(ValueError, match=match):
        FaceGallery.load(path)


def test_load_rejects_members_that_are_not_arrays_or_claim_terabytes(tmp_path):
    import zipfile

    path = tmp_path / "g.npz"
    with zipfile.ZipFile(path, "w") as z:  # members that are not .npy files: numpy returned raw bytes
        for name in ("embeddings", "labels", "header"):
            z.writestr(name, b"not an array")
    with pytest.raises(ValueError, match="not a Lanner face gallery"):
        FaceGallery.load(path)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += b" " * (117 - len(header)) + b"\n"
    with zipfile.ZipFile(path, "w") as z:  # a .npy header declaring 3.6 TiB
        z.writestr("embeddings.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64)
        z.writestr("labels.npy", b"")
        z.writestr("header.npy", b"")
    with pytest.raises(ValueError, match="not a Lanner face gallery"):
        FaceGallery.load(path)


def test_load_accepts_a_valid_handmade_file(tmp_path):
    gallery = FaceGallery.load(_write_npz(tmp_path / "g.npz", **GOOD, header=_header()))
    assert gallery.names == ("a", "b") and gallery.dim == 4
    assert gallery.identify(np.array([0, 1, 0, 0], np.float32)) == (["b"], pytest.approx(np.array([1.0])))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such gallery file"):
        FaceGallery.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="is a folder; expected a gallery file"):  # said "no such gallery file"
        FaceGallery.load(tmp_path)
